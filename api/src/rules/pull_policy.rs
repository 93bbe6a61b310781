//! The default `imagePullPolicy`: `Always` for an untagged or `:latest` image, else
//! `IfNotPresent` (a digest pins the image, so it is never re-pulled by default).

pub const ALWAYS: &str = "Always";
pub const IF_NOT_PRESENT: &str = "IfNotPresent";
pub const NEVER: &str = "Never";

/// The policy Kubernetes' API server sets when a container does not name one.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return IF_NOT_PRESENT;
    }
    // A registry port (`localhost:5000/app`) is not a tag: look only at the last path part.
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None | Some((_, "latest")) => ALWAYS,
        Some(_) => IF_NOT_PRESENT,
    }
}

/// The container's policy, or the default for its image when it names none.
pub fn effective_pull_policy<'a>(policy: Option<&'a str>, image: &str) -> &'a str {
    match policy.filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => default_pull_policy(image),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_and_latest_images_are_always_pulled() {
        for (image, want) in [
            ("nginx", ALWAYS),
            ("nginx:latest", ALWAYS),
            ("nginx:1.27", IF_NOT_PRESENT),
            ("fedek3/workshop-uns:v0.2.0", IF_NOT_PRESENT),
            ("localhost:5000/app", ALWAYS),
            ("localhost:5000/app:latest", ALWAYS),
            ("localhost:5000/app:v1", IF_NOT_PRESENT),
            ("busybox@sha256:abc", IF_NOT_PRESENT),
            ("busybox:latest@sha256:abc", IF_NOT_PRESENT),
            ("", ALWAYS),
        ] {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
        assert_eq!(effective_pull_policy(Some(NEVER), "nginx"), NEVER);
        assert_eq!(effective_pull_policy(None, "nginx"), ALWAYS);
        assert_eq!(effective_pull_policy(Some(""), "nginx:1"), IF_NOT_PRESENT);
    }
}
