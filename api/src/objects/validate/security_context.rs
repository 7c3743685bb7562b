//! `securityContext` at pod and container level: ids in range, profiles
//! that name what they need, sysctls with valid names. Whether a tenant's
//! Pod Security level allows them is [`crate::pod_security`]'s question,
//! not this module's.

use std::collections::BTreeSet;

use crate::objects::field::{FieldPath, Problems};
use crate::objects::security_context::{
    AppArmorProfile, AppArmorProfileType, PodSecurityContext, SeccompProfile, SeccompProfileType,
    SecurityContext,
};

/// The largest user or group id Kubernetes accepts.
const MAX_ID: i64 = i32::MAX as i64;
/// The longest sysctl name.
const MAX_SYSCTL_NAME: usize = 253;

/// A pod's `securityContext`.
pub(super) fn pod_security_context(
    context: &PodSecurityContext,
    path: &FieldPath,
    problems: &mut Problems,
) {
    id(context.run_as_user, &path.child("runAsUser"), problems);
    id(context.run_as_group, &path.child("runAsGroup"), problems);
    id(context.fs_group, &path.child("fsGroup"), problems);
    for (i, group) in context.supplemental_groups.iter().enumerate() {
        id(
            Some(*group),
            &path.child("supplementalGroups").index(i),
            problems,
        );
    }
    let mut names = BTreeSet::new();
    for (i, sysctl) in context.sysctls.iter().enumerate() {
        let at = path.child("sysctls").index(i).child("name");
        if sysctl.name.is_empty() {
            problems.add(&at, "required");
        } else if !is_sysctl_name(&sysctl.name) {
            problems.add(
                &at,
                format!(
                    "{:?} is not a sysctl name: dot- or slash-separated parts of lower-case letters, digits, '-' or '_', at most {MAX_SYSCTL_NAME} characters",
                    sysctl.name
                ),
            );
        } else if !names.insert(sysctl.name.as_str()) {
            problems.add(&at, format!("{:?} is set more than once", sysctl.name));
        }
    }
    if let Some(profile) = &context.seccomp_profile {
        seccomp_profile(profile, &path.child("seccompProfile"), problems);
    }
    if let Some(profile) = &context.app_armor_profile {
        app_armor_profile(profile, &path.child("appArmorProfile"), problems);
    }
}

/// A container's `securityContext`.
pub(super) fn security_context(
    context: &SecurityContext,
    path: &FieldPath,
    problems: &mut Problems,
) {
    id(context.run_as_user, &path.child("runAsUser"), problems);
    id(context.run_as_group, &path.child("runAsGroup"), problems);
    if let Some(capabilities) = &context.capabilities {
        for (field, list) in [("add", &capabilities.add), ("drop", &capabilities.drop)] {
            for (i, capability) in list.iter().enumerate() {
                problems.check(
                    !capability.trim().is_empty(),
                    &path.child("capabilities").child(field).index(i),
                    "must name a capability",
                );
            }
        }
    }
    // As Kubernetes: no_new_privs cannot hold for a process that has every
    // privilege anyway.
    if context.allow_privilege_escalation == Some(false) {
        let at = path.child("allowPrivilegeEscalation");
        problems.check(
            context.privileged != Some(true),
            &at,
            "cannot be false while privileged is true",
        );
        let adds_sys_admin = context.capabilities.as_ref().is_some_and(|c| {
            c.add
                .iter()
                .any(|name| name == "SYS_ADMIN" || name == "CAP_SYS_ADMIN")
        });
        problems.check(
            !adds_sys_admin,
            &at,
            "cannot be false while capabilities.add has SYS_ADMIN",
        );
    }
    if let Some(profile) = &context.seccomp_profile {
        seccomp_profile(profile, &path.child("seccompProfile"), problems);
    }
    if let Some(profile) = &context.app_armor_profile {
        app_armor_profile(profile, &path.child("appArmorProfile"), problems);
    }
}

fn id(value: Option<i64>, path: &FieldPath, problems: &mut Problems) {
    if let Some(value) = value {
        problems.check(
            (0..=MAX_ID).contains(&value),
            path,
            format!("{value} must be between 0 and {MAX_ID}"),
        );
    }
}

fn seccomp_profile(profile: &SeccompProfile, path: &FieldPath, problems: &mut Problems) {
    typed_profile(
        profile
            .type_
            .map(|kind| kind == SeccompProfileType::Localhost),
        profile.localhost_profile.as_deref(),
        path,
        problems,
    );
}

fn app_armor_profile(profile: &AppArmorProfile, path: &FieldPath, problems: &mut Problems) {
    typed_profile(
        profile
            .type_
            .map(|kind| kind == AppArmorProfileType::Localhost),
        profile.localhost_profile.as_deref(),
        path,
        problems,
    );
}

/// A seccomp or AppArmor profile: `type` is required (`localhost` says
/// whether it is `Localhost`), and `localhostProfile` is required with
/// `Localhost` and refused otherwise.
fn typed_profile(
    localhost: Option<bool>,
    given: Option<&str>,
    path: &FieldPath,
    problems: &mut Problems,
) {
    let Some(localhost) = localhost else {
        problems.add(
            &path.child("type"),
            "required: RuntimeDefault, Localhost or Unconfined",
        );
        return;
    };
    let at = path.child("localhostProfile");
    match (localhost, given.filter(|p| !p.is_empty())) {
        (true, None) => problems.add(&at, "required when type is Localhost"),
        (false, Some(_)) => problems.add(&at, "may only be set when type is Localhost"),
        _ => {}
    }
}

/// As Kubernetes: parts of `[a-z0-9]([-_a-z0-9]*[a-z0-9])?` separated by
/// `.` or `/`, at most 253 characters.
fn is_sysctl_name(name: &str) -> bool {
    let part_ok = |part: &str| {
        let bytes = part.as_bytes();
        let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        !bytes.is_empty()
            && bytes.first().is_some_and(edge)
            && bytes.last().is_some_and(edge)
            && bytes.iter().all(|b| edge(b) || matches!(b, b'-' | b'_'))
    };
    name.len() <= MAX_SYSCTL_NAME && name.split(['.', '/']).all(part_ok)
}
