//! Sequential uploads: a client announces a multi target's file list (`begin`), sends
//! the files one request each (each stored at once as a stowage backup in the target's
//! series), then `finish`es, which records one backup of them all, or `terminate`s,
//! which drops what was sent. One per target; a second `begin` is "Target busy"; calls
//! on a target without one are refused (400, as the real server answers). Sessions
//! live in the state file, so an interrupted upload resumes after a restart; one idle for
//! the configured timeout is terminated by `stale_seq_upload_job`.

use std::io::Read;

use chrono::Utc;

use super::store::{Part, SeqFile, SeqSession};
use super::targets::TargetType;
use super::{series_of, BackupchanService, BcError};
use std::sync::Arc;

/// Longest directory path plus name of one file.
pub const MAX_SEQ_PATH: usize = 4096;

/// Checks a directory (`/` or `/a/b`) and a file name; returns the file's relative path.
pub fn relative_path(path: &str, name: &str) -> Result<String, BcError> {
    let bad_name = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.chars().any(char::is_control);
    if bad_name {
        return Err(BcError::Invalid(format!("Invalid file name '{name}'")));
    }
    let dirs: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let bad_path = !path.starts_with('/')
        || dirs.iter().any(|c| {
            *c == "." || *c == ".." || c.contains('\\') || c.chars().any(char::is_control)
        });
    if bad_path {
        return Err(BcError::Invalid(format!(
            "Invalid path '{path}': expected '/' or '/dir/sub' without '.' or '..'"
        )));
    }
    let mut relative = dirs.join("/");
    if !relative.is_empty() {
        relative.push('/');
    }
    relative.push_str(name);
    if relative.len() > MAX_SEQ_PATH {
        return Err(BcError::Invalid("File path is too long".into()));
    }
    Ok(relative)
}

impl BackupchanService {
    /// Opens a sequential upload of `files` (directory, name) on a multi target.
    pub fn seq_begin(
        &self,
        reference: &str,
        manual: bool,
        files: Vec<(String, String)>,
    ) -> Result<(), BcError> {
        let mut state = self.lock();
        let target = Self::find_target(&state, reference)?.clone();
        if target.target_type != TargetType::Multi {
            return Err(BcError::Invalid(
                "Cannot begin sequential upload on single-file target".into(),
            ));
        }
        // Busy comes first: the CLI resumes an interrupted upload on this answer.
        if state.seq_uploads.contains_key(&target.id) {
            return Err(BcError::Busy);
        }
        if files.len() > self.settings.max_files {
            return Err(BcError::Invalid(format!(
                "file_list has more than {} files",
                self.settings.max_files
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for (path, name) in &files {
            if !seen.insert(relative_path(path, name)?) {
                return Err(BcError::Invalid(format!(
                    "File {path}/{name} is listed twice"
                )));
            }
        }
        let session = SeqSession {
            manual,
            files: files
                .into_iter()
                .map(|(path, name)| SeqFile {
                    path,
                    name,
                    part: None,
                })
                .collect(),
            last_activity: Utc::now().timestamp(),
        };
        state.seq_uploads.insert(target.id.clone(), session);
        self.save(&state)?;
        drop(state);
        self.log(format!("Began a sequential upload to target {}", target.id));
        Ok(())
    }

    fn session_target(&self, reference: &str) -> Result<String, BcError> {
        let state = self.lock();
        let id = Self::find_target(&state, reference)?.id.clone();
        if state.seq_uploads.contains_key(&id) {
            Ok(id)
        } else {
            Err(BcError::Invalid(format!(
                "No sequential upload in progress on target {reference}"
            )))
        }
    }

    /// The announced files and whether each was sent.
    pub fn seq_files(&self, reference: &str) -> Result<Vec<SeqFile>, BcError> {
        let id = self.session_target(reference)?;
        Ok(self
            .lock()
            .seq_uploads
            .get(&id)
            .map(|s| s.files.clone())
            .unwrap_or_default())
    }

    /// Checks that a file may be sent now; returns its target id and relative path.
    pub fn seq_claim(
        &self,
        reference: &str,
        path: &str,
        name: &str,
    ) -> Result<(String, String), BcError> {
        let id = self.session_target(reference)?;
        let relative = relative_path(path, name)?;
        let state = self.lock();
        let file = state
            .seq_uploads
            .get(&id)
            .and_then(|s| s.files.iter().find(|f| f.path == path && f.name == name))
            .ok_or_else(|| BcError::Invalid(format!("File {relative} is not in the file list")))?;
        if file.part.is_some() {
            return Err(BcError::Conflict(format!(
                "File {relative} was already uploaded"
            )));
        }
        Ok((id, relative))
    }

    /// Stores one file of a sequential upload.
    pub async fn seq_upload(
        &self,
        target_id: &str,
        path: &str,
        name: &str,
        relative: String,
        reader: Box<dyn Read + Send>,
    ) -> Result<(), BcError> {
        let part = self
            .ingest(
                &series_of(target_id),
                relative.clone(),
                reader,
                Arc::new(crate::repo::Progress::new()),
            )
            .await?;
        let stale = {
            let mut state = self.lock();
            let file = state.seq_uploads.get_mut(target_id).and_then(|s| {
                s.last_activity = Utc::now().timestamp();
                s.files
                    .iter_mut()
                    .find(|f| f.path == path && f.name == name)
            });
            match file {
                Some(file) if file.part.is_none() => {
                    file.part = Some(part.clone());
                    self.save(&state)?;
                    None
                }
                Some(_) => Some(BcError::Conflict(format!(
                    "File {relative} was already uploaded"
                ))),
                None => Some(BcError::Invalid(format!(
                    "No sequential upload in progress on target {target_id}"
                ))),
            }
        };
        match stale {
            None => Ok(()),
            Some(error) => {
                self.purge_parts(&[part]).await;
                Err(error)
            }
        }
    }

    /// Records the backup of every sent file; 409 while some are missing.
    pub async fn seq_finish(&self, reference: &str) -> Result<String, BcError> {
        let id = self.session_target(reference)?;
        let (manual, parts) = {
            let mut state = self.lock();
            let session = state
                .seq_uploads
                .get(&id)
                .cloned()
                .ok_or_else(|| BcError::target(&id))?;
            let missing = session.files.iter().filter(|f| f.part.is_none()).count();
            if missing > 0 {
                return Err(BcError::Conflict(format!(
                    "{missing} files of the file list were not uploaded yet"
                )));
            }
            state.seq_uploads.remove(&id);
            let parts: Vec<Part> = session.files.into_iter().filter_map(|f| f.part).collect();
            (session.manual, parts)
        };
        // The session leaves the state file with the backup's record, in one save.
        let backup = self.record_backup(&id, manual, parts).await?;
        self.log(format!(
            "Finished a sequential upload to target {id}: backup {backup}"
        ));
        Ok(backup)
    }

    /// Drops a sequential upload and the files sent so far.
    pub async fn seq_terminate(&self, reference: &str) -> Result<(), BcError> {
        let id = self.session_target(reference)?;
        self.drop_session(&id).await?;
        self.log(format!("Terminated the sequential upload to target {id}"));
        Ok(())
    }

    async fn drop_session(&self, target_id: &str) -> Result<(), BcError> {
        let parts: Vec<Part> = {
            let mut state = self.lock();
            let Some(session) = state.seq_uploads.remove(target_id) else {
                return Ok(());
            };
            self.save(&state)?;
            session.files.into_iter().filter_map(|f| f.part).collect()
        };
        self.purge_parts(&parts).await;
        Ok(())
    }

    /// Terminates sequential uploads idle longer than the timeout.
    pub(super) async fn expire_seq_uploads(&self) -> Result<String, BcError> {
        let cutoff = Utc::now().timestamp() - self.settings.seq_timeout_secs as i64;
        let stale: Vec<String> = self
            .lock()
            .seq_uploads
            .iter()
            .filter(|(_, s)| s.last_activity < cutoff)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            self.drop_session(id).await?;
        }
        Ok(format!(
            "{} stale sequential uploads terminated",
            stale.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_paths() {
        assert_eq!(relative_path("/", "a.txt").unwrap(), "a.txt");
        assert_eq!(relative_path("/sub/dir", "b").unwrap(), "sub/dir/b");
        for (p, n) in [
            ("/", ".."),
            ("/../x", "a"),
            ("sub", "a"),
            ("/", "a/b"),
            ("/", ""),
        ] {
            assert!(relative_path(p, n).is_err(), "{p} {n}");
        }
    }
}
