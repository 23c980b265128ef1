//! Use-cases in domain terms, above the engine: retention policies today; series, jobs,
//! keys and users as the server grows. No HTTP types in or out.

pub mod agents;
pub mod backupchan;
pub mod backups;
pub mod command_source;
pub mod control;
pub mod cron;
pub mod cyborgbackup;
pub mod documents;
pub mod durable;
pub mod fa;
pub mod forget;
pub mod jobs;
pub mod keys;
pub mod maintenance;
pub mod mirror;
pub mod policies;
pub mod policy_runs;
pub mod retention;
pub mod scheduler;
pub mod schedules;
pub mod server_restore;
pub mod sessions;
pub mod signed_urls;
pub mod stats_history;
pub mod tapu;
pub mod tasks;
pub mod uploads;
pub mod users;
pub mod views;
pub mod web_sessions;
pub mod wings;
