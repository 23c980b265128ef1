//! Request and response bodies, spelled as fa spells them (`web/routers/backup.go`).

use serde::{Deserialize, Serialize};

use crate::service::fa::{BackupJobView, FaStat, FaStatus, RestoreJobView};

/// `POST /backup[/new]`.
#[derive(Debug, Deserialize)]
pub struct NewBackup {
    pub id: i64,
    pub path: String,
    /// fa's storage selector; only the user's home (absent, -1) is served.
    #[serde(default)]
    pub storage_id: Option<i64>,
}

/// `POST /restore[/new]`.
#[derive(Debug, Deserialize)]
pub struct NewRestore {
    pub restore_id: i64,
    pub backup_id: i64,
    pub dst_path: String,
    #[serde(default)]
    pub storage_id: Option<i64>,
}

/// `POST /backup/cancel`, `POST /restore/cancel`.
#[derive(Debug, Deserialize)]
pub struct Cancel {
    #[serde(alias = "restore_id")]
    pub id: i64,
}

#[derive(Debug, Serialize)]
pub struct Stat {
    pub total_size: u64,
    pub pack_size: u64,
}

impl From<FaStat> for Stat {
    fn from(stat: FaStat) -> Stat {
        Stat {
            total_size: stat.total_size,
            pack_size: stat.pack_size,
        }
    }
}

/// fa's status words: `pending|running|success|failed|cancel`.
pub fn status(status: FaStatus) -> &'static str {
    match status {
        FaStatus::Pending => "pending",
        FaStatus::Running => "running",
        FaStatus::Success => "success",
        FaStatus::Failed => "failed",
        FaStatus::Cancel => "cancel",
    }
}

/// `data` of `GET /backup/{id}`.
#[derive(Debug, Serialize)]
pub struct Backup {
    pub id: i64,
    pub path: String,
    pub status: &'static str,
    pub stat: Stat,
    pub extra: String,
}

impl From<BackupJobView> for Backup {
    fn from(view: BackupJobView) -> Backup {
        Backup {
            id: view.id,
            path: view.path,
            status: status(view.status),
            stat: view.stat.into(),
            extra: view.extra,
        }
    }
}

/// `data` of `GET /restore/{id}`.
#[derive(Debug, Serialize)]
pub struct Restore {
    pub restore_id: i64,
    pub backup_id: i64,
    pub dst_path: String,
    pub status: &'static str,
    pub stat: Stat,
    pub extra: String,
}

impl From<RestoreJobView> for Restore {
    fn from(view: RestoreJobView) -> Restore {
        Restore {
            restore_id: view.restore_id,
            backup_id: view.backup_id,
            dst_path: view.dst_path,
            status: status(view.status),
            stat: view.stat.into(),
            extra: view.extra,
        }
    }
}

/// `data` of `GET /backup/repo-destroyed`.
#[derive(Debug, Serialize)]
pub struct RepoDestroyed {
    pub destroyed: bool,
}
