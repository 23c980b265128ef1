//! CyBorgBackup job events: the lines of a job's output, one event per line, as the
//! original records each line borg prints. They are made from the core job when asked,
//! not stored, so an event's id must follow from its job and line: it is
//! `job id × EVENTS_PER_JOB + counter`, and a job shows at most `EVENTS_PER_JOB - 1`
//! events (the last one says how many lines it folds). A job's output is a few dozen
//! lines, far below that.

use super::jobs::JobRow;
use super::CbError;
use super::CyborgService;
use crate::state::jobs::JobStatus;

/// Event ids of one job: `job × EVENTS_PER_JOB + 1 ..= job × EVENTS_PER_JOB + (EVENTS_PER_JOB - 1)`.
pub const EVENTS_PER_JOB: u64 = 10_000;

/// What an error line starts with in [`JobRow::stdout`].
const ERROR_PREFIX: &str = "Error: ";

/// One line of a job's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    pub id: u64,
    pub job: u64,
    /// 1-based line number within the job.
    pub counter: u64,
    /// `verbose`, or `error` for the line that says why the job failed.
    pub event: &'static str,
    pub failed: bool,
    pub stdout: String,
    /// When the job last changed (RFC 3339): its lines are known from then on.
    pub created: String,
    /// Stable across requests: derived from the core job and the line.
    pub uuid: String,
}

impl JobEvent {
    /// What the original's event choices call this event.
    pub fn event_display(&self) -> &'static str {
        match self.event {
            "error" => "Error",
            _ => "Verbose",
        }
    }
}

/// The job that holds event `id`, if the id can be one.
pub fn job_of(id: u64) -> Option<u64> {
    (!id.is_multiple_of(EVENTS_PER_JOB)).then_some(id / EVENTS_PER_JOB)
}

fn stable_uuid(core_id: &str, counter: u64) -> String {
    let digest = blake3::hash(format!("stowage job event\0{core_id}\0{counter}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_bytes()[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl JobRow {
    /// The job's output lines as events, first line first.
    pub fn events(&self) -> Vec<JobEvent> {
        let text = self.stdout();
        let lines: Vec<&str> = text.lines().collect();
        let room = (EVENTS_PER_JOB - 1) as usize;
        let mut shown: Vec<String> = lines.iter().take(room).map(|l| l.to_string()).collect();
        if lines.len() > room {
            let folded = lines.len() - room + 1;
            if let Some(last) = shown.last_mut() {
                *last = format!("({folded} more lines not shown)");
            }
        }
        let failed = matches!(self.core.status, JobStatus::Failed);
        let created = self
            .core
            .finished_at
            .clone()
            .or_else(|| self.core.started_at.clone())
            .unwrap_or_else(|| self.core.created_at.clone());
        shown
            .into_iter()
            .enumerate()
            .map(|(index, line)| {
                let counter = index as u64 + 1;
                let is_error = failed && line.starts_with(ERROR_PREFIX);
                JobEvent {
                    id: self.id.saturating_mul(EVENTS_PER_JOB) + counter,
                    job: self.id,
                    counter,
                    event: if is_error { "error" } else { "verbose" },
                    failed: is_error,
                    stdout: line,
                    created: created.clone(),
                    uuid: stable_uuid(&self.core.id, counter),
                }
            })
            .collect()
    }
}

impl CyborgService {
    /// Every job's events, or one job's.
    pub fn job_events(&self, job: Option<u64>) -> Result<Vec<(JobRow, Vec<JobEvent>)>, CbError> {
        let rows = match job {
            Some(id) => vec![self.job(id)?],
            None => self.list_jobs(),
        };
        Ok(rows
            .into_iter()
            .map(|row| {
                let events = row.events();
                (row, events)
            })
            .collect())
    }

    /// One event by its id.
    pub fn job_event(&self, id: u64) -> Result<(JobRow, JobEvent), CbError> {
        let not_found = || CbError::NotFound("JobEvent");
        let row = self
            .job(job_of(id).ok_or_else(not_found)?)
            .map_err(|_| not_found())?;
        let event = row
            .events()
            .into_iter()
            .find(|e| e.id == id)
            .ok_or_else(not_found)?;
        Ok((row, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_name_their_job() {
        assert_eq!(job_of(70_003), Some(7));
        assert_eq!(job_of(9_999), Some(0));
        assert_eq!(job_of(70_000), None);
        assert_eq!(stable_uuid("a", 1), stable_uuid("a", 1));
        assert_ne!(stable_uuid("a", 1), stable_uuid("a", 2));
        assert_ne!(stable_uuid("a", 1), stable_uuid("b", 1));
    }
}
