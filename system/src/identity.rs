//! Who a message can be from: user ids and service senders live in two
//! namespaces that cannot overlap (`service:<name>`; `:` is never in a user
//! id). A lowest-layer rule: the broker's message check, the gateway and
//! the login path all use it.

/// Longest user id (and service name) accepted, in bytes.
pub const MAX_USER_ID_BYTES: usize = 128;

/// The `from` of a message an API-key holder published: `service:<name>`.
/// User ids never contain `:`, so no user can appear as a service and no
/// service as a user.
pub const SERVICE_SENDER_PREFIX: &str = "service:";

/// The user-id rule, as error messages state it.
pub const USER_ID_RULE: &str = "user_id must be 1-128 bytes, without `:` or control characters";

/// A user id (or a service name) is 1–128 bytes without `:` and without
/// control characters.
pub fn valid_user_id(user_id: &str) -> bool {
    !user_id.is_empty()
        && user_id.len() <= MAX_USER_ID_BYTES
        && !user_id.contains(':')
        && !user_id.chars().any(char::is_control)
}

/// The `from` of a message a service named `name` publishes.
pub fn service_sender(name: &str) -> String {
    format!("{SERVICE_SENDER_PREFIX}{name}")
}

/// Whether `from` is a well-formed sender: a user id, or `service:` and a
/// service name. Every hop that reads a message checks it (the consumer
/// too: bytes from the queue are not trusted).
pub fn valid_sender(from: &str) -> bool {
    match from.strip_prefix(SERVICE_SENDER_PREFIX) {
        Some(name) => valid_user_id(name),
        None => valid_user_id(from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_one_to_128_bytes_without_colons_or_controls() {
        assert!(!valid_user_id(""));
        assert!(valid_user_id("a"));
        assert!(valid_user_id(&"a".repeat(128)));
        assert!(!valid_user_id(&"a".repeat(129)));
        assert!(!valid_user_id("service:alice"));
        assert!(!valid_user_id("al:ice"));
        assert!(!valid_user_id("alice\n[99] bob"));
        assert!(!valid_user_id("\u{1b}[2J"));
    }

    #[test]
    fn senders_are_users_or_services_and_never_both() {
        assert!(valid_sender("alice"));
        assert!(valid_sender("service:billing"));
        assert!(!valid_sender("service:"));
        assert!(!valid_sender("service:a:b"));
        assert!(!valid_sender("bot:alice"));
        assert_eq!(service_sender("alice"), "service:alice");
        assert_ne!(service_sender("alice"), "alice");
    }
}
