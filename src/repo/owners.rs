//! User and group names for numeric ids, looked up once each (`getpwuid_r`,
//! `getgrgid_r`) and cached for the rest of a tree walk.

use std::collections::HashMap;
use std::ffi::CStr;

#[derive(Default)]
pub struct OwnerNames {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl OwnerNames {
    pub fn user(&mut self, uid: u32) -> String {
        self.users
            .entry(uid)
            .or_insert_with(|| lookup_user(uid))
            .clone()
    }

    pub fn group(&mut self, gid: u32) -> String {
        self.groups
            .entry(gid)
            .or_insert_with(|| lookup_group(gid))
            .clone()
    }
}

// One of the documented places with unsafe code (libc's reentrant passwd lookup).
#[allow(unsafe_code)]
fn lookup_user(uid: u32) -> String {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: `passwd` is plain data; getpwuid_r writes into it and `buffer`, both of
    // which outlive the call, and sets `result` to null or to `&passwd`.
    unsafe {
        let mut passwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let status = libc::getpwuid_r(
            uid,
            &mut passwd,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        );
        if status != 0 || result.is_null() || passwd.pw_name.is_null() {
            return String::new();
        }
        CStr::from_ptr(passwd.pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

#[allow(unsafe_code)]
fn lookup_group(gid: u32) -> String {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: as in `lookup_user`, for `group` and getgrgid_r.
    unsafe {
        let mut group: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let status = libc::getgrgid_r(
            gid,
            &mut group,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        );
        if status != 0 || result.is_null() || group.gr_name.is_null() {
            return String::new();
        }
        CStr::from_ptr(group.gr_name).to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_named_and_unknown_ids_are_empty() {
        let mut names = OwnerNames::default();
        assert_eq!(names.user(0), "root");
        assert_eq!(names.user(3_999_999_999), "");
    }
}
