//! CyBorgBackup schedules over the core schedules (`service::schedules`): CyBorgBackup
//! names them freely (spaces and all) and numbers them, the core names them with a
//! restricted alphabet, so each schedule is a core schedule `cyborgbackup-<id>` plus a
//! link in the dialect's document holding its id, display name, uuid and times. The
//! crontab is CyBorgBackup's six-field form (minute hour day month weekday year), checked
//! by the core when stored: a bad one is refused naming the field and the reason.

use super::store::{self, ScheduleLink};
use super::{drf_now, Account, CbError, CyborgService};
use crate::service::cron::{Cron, Form};
use crate::service::schedules::{ScheduleError, ScheduleView};

/// The longest schedule name.
pub const MAX_NAME_LEN: usize = 512;
/// The longest crontab.
pub const MAX_CRONTAB_LEN: usize = 256;

/// A schedule as CyBorgBackup shows it.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub id: u64,
    pub link: ScheduleLink,
    pub core: ScheduleView,
}

/// The writable fields of a schedule; `None`: not given.
#[derive(Debug, Clone, Default)]
pub struct ScheduleInput {
    pub name: Option<String>,
    pub crontab: Option<String>,
    pub enabled: Option<bool>,
}

fn check_name(name: &str) -> Result<(), CbError> {
    if name.trim().is_empty() {
        return Err(CbError::invalid("name", "This field may not be blank."));
    }
    if name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(CbError::invalid(
            "name",
            format!("Ensure this field has no more than {MAX_NAME_LEN} characters, without control characters."),
        ));
    }
    Ok(())
}

/// Checks a crontab: CyBorgBackup's six fields, each valid.
pub fn check_crontab(crontab: &str) -> Result<(), CbError> {
    let refuse = |reason: String| CbError::invalid("crontab", reason);
    if crontab.len() > MAX_CRONTAB_LEN {
        return Err(refuse(format!(
            "expression: at most {MAX_CRONTAB_LEN} characters"
        )));
    }
    let cron: Cron = crontab.parse().map_err(|e| refuse(format!("{e}")))?;
    if cron.form() != Form::SixField {
        return Err(refuse(
            "expression: six fields are needed (minute hour day-of-month month day-of-week year)"
                .into(),
        ));
    }
    Ok(())
}

fn core_error(error: ScheduleError) -> CbError {
    match error {
        ScheduleError::InvalidCrontab(e) => CbError::invalid("crontab", e.to_string()),
        ScheduleError::NotFound(_) => CbError::NotFound("Schedule"),
        other => other.into(),
    }
}

impl CyborgService {
    fn schedule_link(&self, id: u64) -> Result<ScheduleLink, CbError> {
        self.lock()
            .schedules
            .get(&id)
            .cloned()
            .ok_or(CbError::NotFound("Schedule"))
    }

    /// Every schedule whose core schedule still exists, by id.
    pub fn list_schedules(&self, caller: &Account) -> Result<Vec<Schedule>, CbError> {
        let links = self.lock().schedules.clone();
        let who = caller.principal();
        let mut cores: std::collections::HashMap<String, ScheduleView> = self
            .schedules
            .list(&who)
            .map_err(core_error)?
            .into_iter()
            .map(|v| (v.name.clone(), v))
            .collect();
        Ok(links
            .into_iter()
            .filter_map(|(id, link)| {
                let core = cores.remove(&link.core)?;
                Some(Schedule { id, link, core })
            })
            .collect())
    }

    pub fn schedule(&self, caller: &Account, id: u64) -> Result<Schedule, CbError> {
        let link = self.schedule_link(id)?;
        let core = self
            .schedules
            .get(&caller.principal(), &link.core)
            .map_err(core_error)?;
        Ok(Schedule { id, link, core })
    }

    pub fn create_schedule(
        &self,
        caller: &Account,
        input: ScheduleInput,
    ) -> Result<Schedule, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let mut errors = Vec::new();
        for (field, given) in [
            ("name", input.name.is_some()),
            ("crontab", input.crontab.is_some()),
        ] {
            if !given {
                errors.push((field.to_string(), "This field is required.".to_string()));
            }
        }
        if let Some(Err(CbError::Invalid(mut list))) = input.name.as_deref().map(check_name) {
            errors.append(&mut list);
        }
        if let Some(Err(CbError::Invalid(mut list))) = input.crontab.as_deref().map(check_crontab) {
            errors.append(&mut list);
        }
        if !errors.is_empty() {
            return Err(CbError::Invalid(errors));
        }
        let name = input.name.unwrap_or_default();
        let crontab = input.crontab.unwrap_or_default();
        let mut state = self.lock();
        let id = store::take_id(&mut state.next_schedule_id);
        let core_name = format!("cyborgbackup-{id}");
        let core = self
            .schedules
            .create(
                &caller.principal(),
                &core_name,
                &crontab,
                input.enabled.unwrap_or(true),
            )
            .map_err(core_error)?;
        let now = drf_now();
        let link = ScheduleLink {
            core: core_name,
            name,
            uuid: uuid::Uuid::new_v4().to_string(),
            created: now.clone(),
            modified: now,
        };
        state.schedules.insert(id, link.clone());
        self.save(&state)?;
        Ok(Schedule { id, link, core })
    }

    pub fn update_schedule(
        &self,
        caller: &Account,
        id: u64,
        input: ScheduleInput,
    ) -> Result<Schedule, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let mut link = self.schedule_link(id)?;
        if let Some(name) = &input.name {
            check_name(name)?;
        }
        if let Some(crontab) = &input.crontab {
            check_crontab(crontab)?;
        }
        let core = self
            .schedules
            .update(
                &caller.principal(),
                &link.core,
                input.crontab.as_deref(),
                input.enabled,
            )
            .map_err(core_error)?;
        if let Some(name) = input.name {
            link.name = name;
        }
        link.modified = drf_now();
        let mut state = self.lock();
        state.schedules.insert(id, link.clone());
        self.save(&state)?;
        Ok(Schedule { id, link, core })
    }

    pub fn delete_schedule(&self, caller: &Account, id: u64) -> Result<(), CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let link = self.schedule_link(id)?;
        match self.schedules.delete(&caller.principal(), &link.core) {
            Ok(()) | Err(ScheduleError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut state = self.lock();
        state.schedules.remove(&id);
        self.save(&state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crontabs_need_six_valid_fields() {
        check_crontab("0 5 * * MON *").unwrap();
        check_crontab("1 1 1 1 * *").unwrap();
        let message = |c: &str| match check_crontab(c) {
            Err(CbError::Invalid(list)) => list[0].1.clone(),
            other => panic!("{c}: {other:?}"),
        };
        assert!(message("0 5 * * *").contains("six fields"));
        assert!(message("61 5 * * * *").starts_with("minute"));
        assert!(message("0 5 * * 0 *").starts_with("day-of-week"));
    }
}
