//! A test-only fault, compiled only under the cargo feature
//! `test-consumer-drop` (never in a release build): the consumer
//! acknowledges the message `consumer.test_drop_message_id` to RabbitMQ yet
//! neither appends nor broadcasts it. It exists so that the history
//! checker can be shown, end to end, to flag exactly one acknowledged
//! message as lost (`rtmc-chaos`'s `checker_e2e` suite).

use crate::config::ConsumerConfig;

/// Removes the configured message from a batch about to be appended; the
/// batch is acked whole afterwards, so that message is lost on purpose.
pub(super) fn drop_configured(cfg: &ConsumerConfig, items: &mut Vec<(String, Vec<u8>)>) {
    let target = cfg.test_drop_message_id.as_str();
    if target.is_empty() {
        return;
    }
    let before = items.len();
    items.retain(|(id, _)| id != target);
    if items.len() < before {
        tracing::warn!(
            message_id = target,
            "test-consumer-drop: acknowledging a message without appending it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_only_the_configured_message() {
        let item = |id: &str| (id.to_owned(), Vec::new());
        let mut items = vec![item("a"), item("b"), item("c")];
        let mut cfg = ConsumerConfig::default();
        drop_configured(&cfg, &mut items);
        assert_eq!(items.len(), 3, "disabled by default");
        cfg.test_drop_message_id = "b".into();
        drop_configured(&cfg, &mut items);
        let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
    }
}
