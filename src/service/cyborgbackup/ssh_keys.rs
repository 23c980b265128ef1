//! The SSH key pair of CyBorgBackup's SSH settings (`settings/generate_ssh/`,
//! `settings/get_ssh_publickey/`): made here (no `ssh-keygen`), its private half kept as
//! the `cyborgbackup_ssh_key` setting in OpenSSH's format, its public half read from it.
//! The real server uses the pair to reach clients over SSH; stowage's clients reach the
//! server through their agents, so the pair is kept and shown for the UI and the
//! operator's own use, not used to connect anywhere.

use serde_json::{Map, Value};
use ssh_key::{Algorithm, EcdsaCurve, LineEnding, PrivateKey};

use super::settings::SETTING_SSH_KEY;
use super::store::SettingValue;
use super::{drf_now, Account, CbError, CyborgService};

/// The comment the original gives its keys.
const COMMENT: &str = "cyborg@cyborg.local";

/// The kinds of key `generate_ssh` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    EcdsaP256,
    EcdsaP384,
}

impl KeyKind {
    fn algorithm(self) -> Algorithm {
        match self {
            KeyKind::Ed25519 => Algorithm::Ed25519,
            KeyKind::EcdsaP256 => Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            KeyKind::EcdsaP384 => Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
        }
    }
}

/// A number given as JSON number or numeric text, as forms send it.
fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Whether a flag is set, as forms send it.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_u64().is_some_and(|n| n != 0),
        Value::String(s) => matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        _ => false,
    }
}

/// The kind a `generate_ssh` body asks for (`type`, `size`), and whether it forces a
/// new pair over a stored one (`force`).
pub fn key_request(body: &Map<String, Value>) -> Result<(KeyKind, bool), CbError> {
    let kind_name = match body.get("type") {
        Some(Value::String(t)) => t.trim().to_ascii_lowercase(),
        None | Some(Value::Null) => "ed25519".into(),
        Some(_) => return Err(CbError::invalid("type", "Not a valid string.")),
    };
    let size = match body.get("size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            number(v).ok_or_else(|| CbError::invalid("size", "A valid integer is required."))?,
        ),
    };
    let kind = match (kind_name.as_str(), size) {
        ("ed25519", _) => KeyKind::Ed25519,
        ("ecdsa", None | Some(256)) => KeyKind::EcdsaP256,
        ("ecdsa", Some(384)) => KeyKind::EcdsaP384,
        ("ecdsa", Some(other)) => {
            return Err(CbError::invalid(
                "size",
                format!("stowage makes ECDSA keys of 256 or 384 bits, not {other}."),
            ))
        }
        ("rsa" | "dsa", _) => {
            return Err(CbError::invalid(
                "type",
                format!("stowage makes ed25519 and ecdsa keys, not {kind_name}."),
            ))
        }
        _ => {
            return Err(CbError::invalid(
                "type",
                "Use \"ed25519\" (the default) or \"ecdsa\".",
            ))
        }
    };
    Ok((kind, body.get("force").is_some_and(truthy)))
}

/// The public half of an OpenSSH private key, as one `authorized_keys` line.
pub fn public_line(private: &str) -> Option<String> {
    let key = PrivateKey::from_openssh(private).ok()?;
    key.public_key().to_openssh().ok()
}

impl CyborgService {
    fn stored_ssh_key(&self) -> String {
        self.lock()
            .settings
            .get(&SETTING_SSH_KEY)
            .map(|v| v.value.clone())
            .unwrap_or_default()
    }

    /// Whether a private key is stored.
    pub fn has_ssh_key(&self) -> bool {
        !self.stored_ssh_key().is_empty()
    }

    /// The stored key's public line; `None` when none is stored or it is not an OpenSSH
    /// private key (one written by hand through the setting).
    pub fn ssh_public_key(&self) -> Option<String> {
        let stored = self.stored_ssh_key();
        if stored.is_empty() {
            return None;
        }
        let line = public_line(&stored);
        if line.is_none() {
            tracing::warn!("the cyborgbackup_ssh_key setting is not an OpenSSH private key");
        }
        line
    }

    /// Makes and stores a new pair (superusers only); `Ok(None)` when one is stored and
    /// `force` was not given: the original's 409.
    pub fn generate_ssh_key(
        &self,
        caller: &Account,
        kind: KeyKind,
        force: bool,
    ) -> Result<Option<String>, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let mut private = PrivateKey::random(&mut rand::rngs::OsRng, kind.algorithm())
            .map_err(|e| CbError::Unavailable(format!("cannot make the SSH key: {e}")))?;
        private.set_comment(COMMENT);
        let text = private
            .to_openssh(LineEnding::LF)
            .map_err(|e| CbError::Unavailable(format!("cannot encode the SSH key: {e}")))?;
        let public = private
            .public_key()
            .to_openssh()
            .map_err(|e| CbError::Unavailable(format!("cannot encode the SSH key: {e}")))?;
        let mut state = self.lock();
        let stored = state
            .settings
            .get(&SETTING_SSH_KEY)
            .is_some_and(|v| !v.value.is_empty());
        if stored && !force {
            return Ok(None);
        }
        state.settings.insert(
            SETTING_SSH_KEY,
            SettingValue {
                value: text.to_string(),
                modified: drf_now(),
            },
        );
        self.save(&state)?;
        Ok(Some(public))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> Result<(KeyKind, bool), CbError> {
        key_request(body.as_object().unwrap())
    }

    #[test]
    fn requests_name_a_kind_stowage_makes() {
        assert_eq!(request(json!({})).unwrap(), (KeyKind::Ed25519, false));
        assert_eq!(
            request(json!({"type": "ed25519", "size": 256, "force": true})).unwrap(),
            (KeyKind::Ed25519, true)
        );
        assert_eq!(
            request(json!({"type": "ecdsa", "size": "384"})).unwrap().0,
            KeyKind::EcdsaP384
        );
        for bad in [
            json!({"type": "rsa", "size": 4096}),
            json!({"type": "dsa"}),
            json!({"type": "ecdsa", "size": 521}),
            json!({"type": "x"}),
            json!({"type": 3}),
            json!({"size": "big"}),
        ] {
            assert!(request(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_made_key_gives_back_its_public_line() {
        for kind in [KeyKind::Ed25519, KeyKind::EcdsaP256] {
            let mut key = PrivateKey::random(&mut rand::rngs::OsRng, kind.algorithm()).unwrap();
            key.set_comment(COMMENT);
            let text = key.to_openssh(LineEnding::LF).unwrap();
            let line = public_line(&text).unwrap();
            assert_eq!(line, key.public_key().to_openssh().unwrap());
            assert!(line.ends_with(COMMENT), "{line}");
        }
        assert_eq!(public_line("not a key"), None);
    }
}
