//! `stowage key ...`, `user ...`, `schedule ...` and `policy ...` against the state store: opened directly when no server holds it,
//! else through the running server's control socket (`service::control`), so the
//! command works either way and a running server sees the change at once.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::service::control::{self, ControlReply, ControlRequest, CONTROL_SOCKET, MAX_LINE_BYTES};
use crate::service::keys::KeyStore;
use crate::service::policies::Policies;
use crate::service::schedules::Schedules;
use crate::service::users::UserStore;
use crate::state::{StateError, StateStore, STATE_FILE};

/// Carries out `request` on the state store of `data_dir`.
pub async fn run(data_dir: &Path, request: ControlRequest) -> Result<ControlReply> {
    match StateStore::open(&data_dir.join(STATE_FILE)) {
        Ok(store) => {
            let store = Arc::new(store);
            let keys = KeyStore::new(store.clone());
            let users = UserStore::new(store.clone());
            let schedules = Schedules::new(store.clone());
            let policies = Policies::new(store, None);
            keys.migrate_file(&data_dir.join("keys.json"))?;
            let stores = control::Stores {
                keys: &keys,
                users: &users,
                schedules: &schedules,
                policies: &policies,
                runner: None,
            };
            Ok(control::handle(&stores, request))
        }
        Err(StateError::Locked { .. }) => through_server(data_dir, &request).await,
        Err(error) => Err(error.into()),
    }
}

/// Sends `request` to the server holding the store.
async fn through_server(data_dir: &Path, request: &ControlRequest) -> Result<ControlReply> {
    let socket = data_dir.join(CONTROL_SOCKET);
    let stream = tokio::net::UnixStream::connect(&socket).await.with_context(|| {
        format!(
            "the state store is held by a running server, and its control socket {} does not answer",
            socket.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).expect("requests serialize");
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut reply = Vec::new();
    tokio::io::BufReader::new(read.take(MAX_LINE_BYTES as u64 + 1))
        .read_until(b'\n', &mut reply)
        .await?;
    if reply.is_empty() || reply.len() > MAX_LINE_BYTES {
        bail!("the server closed its control socket without an answer");
    }
    serde_json::from_slice(&reply).context("the server's control answer does not decode")
}

/// A new password for `stowage user create` and `user passwd`: `STOWAGE_USER_PASSWORD`,
/// else asked twice (unechoed) on a terminal, else the first line of stdin.
pub fn read_new_password() -> Result<String> {
    use std::io::{BufRead, IsTerminal, Read};
    if let Some(password) = std::env::var("STOWAGE_USER_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ")?;
        let second = rpassword::prompt_password("password again: ")?;
        if first != second {
            bail!("the two passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(crate::service::users::MAX_PASSWORD_LEN as u64 + 2)
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("no password: set STOWAGE_USER_PASSWORD or write it on stdin");
    }
    Ok(password)
}
