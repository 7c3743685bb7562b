//! `securityContext` at pod and container level, shaped like Kubernetes'
//! `PodSecurityContext` and `SecurityContext`: who a container runs as,
//! which privileges it may hold and which confinement profiles apply.
//! The Pod Security rules ([`crate::pod_security`]) read these fields and
//! the agent turns them into runtime options.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What applies to every container of a pod, unless a container's own
/// [`SecurityContext`] says otherwise.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSecurityContext {
    /// The user id the containers' processes run as (the image's when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// The group id the containers' processes run as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    /// Refuse to start a container whose user is root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// A supplementary group that owns the pod's volumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<i64>,
    /// When volume ownership is changed to `fsGroup`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_group_change_policy: Option<FsGroupChangePolicy>,
    /// Further groups every container's first process belongs to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<i64>,
    /// How `supplementalGroups` combine with the image's groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supplemental_groups_policy: Option<SupplementalGroupsPolicy>,
    /// Namespaced kernel parameters set for the pod.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<Sysctl>,
    /// The seccomp profile of every container that sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
    /// The AppArmor profile of every container that sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_armor_profile: Option<AppArmorProfile>,
    /// The SELinux context of every container that sets none.
    #[serde(rename = "seLinuxOptions", skip_serializing_if = "Option::is_none")]
    pub se_linux_options: Option<SeLinuxOptions>,
    /// Windows-specific settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows_options: Option<WindowsSecurityContextOptions>,
}

/// One container's security settings; each field set here overrides the
/// pod's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct SecurityContext {
    /// The user id the container's processes run as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// The group id the container's processes run as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    /// Refuse to start the container when its user is root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// Mount the container's root filesystem read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// Whether a process may gain more privileges than its parent
    /// (setuid binaries; `no_new_privs` when false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// Run with every privilege of the host's root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Linux capabilities added to and dropped from the runtime's default set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// The container's seccomp profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
    /// The container's AppArmor profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_armor_profile: Option<AppArmorProfile>,
    /// How `/proc` is masked in the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proc_mount: Option<ProcMountType>,
    /// The container's SELinux context.
    #[serde(rename = "seLinuxOptions", skip_serializing_if = "Option::is_none")]
    pub se_linux_options: Option<SeLinuxOptions>,
    /// Windows-specific settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows_options: Option<WindowsSecurityContextOptions>,
}

/// Linux capabilities, by name without the `CAP_` prefix (`NET_BIND_SERVICE`),
/// or `ALL`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Capabilities {
    /// Added to the runtime's default set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Removed from it (`ALL` removes every one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// A namespaced kernel parameter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Sysctl {
    /// Its name (`net.ipv4.ip_local_port_range`).
    pub name: String,
    /// Its value.
    pub value: String,
}

/// A seccomp profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct SeccompProfile {
    /// Which kind of profile; required.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<SeccompProfileType>,
    /// For `Localhost`: the profile's path relative to the node's seccomp
    /// directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
}

/// The kinds of seccomp profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum SeccompProfileType {
    /// The container runtime's default profile.
    RuntimeDefault,
    /// A profile file on the node.
    Localhost,
    /// No seccomp filtering.
    Unconfined,
}

/// An AppArmor profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct AppArmorProfile {
    /// Which kind of profile; required.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<AppArmorProfileType>,
    /// For `Localhost`: the name of a profile loaded on the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
}

/// The kinds of AppArmor profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum AppArmorProfileType {
    /// The container runtime's default profile.
    RuntimeDefault,
    /// A profile loaded on the node.
    Localhost,
    /// No AppArmor confinement.
    Unconfined,
}

/// How `/proc` is mounted in a container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ProcMountType {
    /// The runtime masks and makes read-only the sensitive paths.
    #[default]
    Default,
    /// Nothing is masked.
    Unmasked,
}

/// When the ownership of a pod's volumes is changed to its `fsGroup`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum FsGroupChangePolicy {
    /// Only when the volume's root does not match already.
    OnRootMismatch,
    /// On every mount.
    Always,
}

/// How a pod's `supplementalGroups` combine with the image's groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum SupplementalGroupsPolicy {
    /// The image's groups of the user, plus those given.
    Merge,
    /// Only the groups given.
    Strict,
}

/// An SELinux context.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct SeLinuxOptions {
    /// The SELinux user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The SELinux role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The SELinux type (`container_t`).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The SELinux level (`s0:c123,c456`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// Settings for Windows containers; accepted and kept (Berth's nodes run
/// Linux), and `hostProcess` is checked by the Pod Security rules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct WindowsSecurityContextOptions {
    /// The name of a GMSA credential spec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gmsa_credential_spec_name: Option<String>,
    /// A GMSA credential spec, inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gmsa_credential_spec: Option<String>,
    /// The Windows user name the entrypoint runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user_name: Option<String>,
    /// Run as a process on the host rather than in a container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_process: Option<bool>,
}
