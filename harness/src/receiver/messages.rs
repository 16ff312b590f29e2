//! Every text the receiver answers with that Loki also answers with, as Loki 3.7 writes it
//! (`pkg/validation/validate.go`, `pkg/distributor`, `pkg/ingester/stream.go`,
//! `pkg/util/http.go`, dskit's ring and lifecycler). One function per message so that the
//! texts can be checked against Loki's in one place; the callers decide when each applies.
//!
//! `labels` arguments are stream labels as Loki prints them (`{job="app", service_name="app"}`);
//! times are nanoseconds since the epoch, printed in UTC.

use std::time::Duration;

use super::gofmt::{datasize, go_duration, go_time_string, humanize_bytes, rfc3339};

/// `validation.GreaterThanMaxSampleAgeErrorMsg`. Both times are printed to the second (Go's
/// RFC 3339), although the check is made to the nanosecond.
pub fn too_old(labels: &str, ts_ns: i64, cutoff_ns: i64) -> String {
    format!(
        "entry for stream '{labels}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
        rfc3339(ts_ns),
        rfc3339(cutoff_ns)
    )
}

/// `validation.TooFarInFutureErrorMsg`.
pub fn too_new(labels: &str, ts_ns: i64) -> String {
    format!(
        "entry for stream '{labels}' has timestamp too new: {}",
        rfc3339(ts_ns)
    )
}

/// `validation.LineTooLongErrorMsg` (lower-case since Loki 3.6).
pub fn line_too_long(max: u64, labels: &str, length: usize) -> String {
    format!(
        "max entry size '{max}' bytes exceeded for stream '{labels}' while adding an entry with length '{length}' bytes"
    )
}

/// `validation.StructuredMetadataTooLargeErrorMsg`.
pub fn metadata_too_large(labels: &str, size: usize, max: u64) -> String {
    format!(
        "stream '{labels}' has structured metadata too large: '{size}' bytes, limit: '{max}' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it"
    )
}

/// `validation.StructuredMetadataTooManyErrorMsg`.
pub fn metadata_too_many(labels: &str, count: usize, max: usize) -> String {
    format!(
        "stream '{labels}' has too many structured metadata labels: '{count}', limit: '{max}'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it"
    )
}

/// `validation.MissingLabelsErrorMsg`.
pub const MISSING_LABELS: &str = "error at least one label pair is required per stream";

/// `validation.MaxLabelNamesPerSeriesErrorMsg`.
pub fn max_label_names(labels: &str, count: usize, max: usize) -> String {
    format!("entry for stream '{labels}' has {count} label names; limit {max}")
}

/// `validation.LabelNameTooLongErrorMsg`.
pub fn label_name_too_long(labels: &str, name: &str) -> String {
    format!("stream '{labels}' has label name too long: '{name}'")
}

/// `validation.LabelValueTooLongErrorMsg`.
pub fn label_value_too_long(labels: &str, value: &str) -> String {
    format!("stream '{labels}' has label value too long: '{value}'")
}

/// `validation.DuplicateLabelNamesErrorMsg`.
pub fn duplicate_label_name(labels: &str, name: &str) -> String {
    format!("stream '{labels}' has duplicate label name: '{name}'")
}

/// `validation.RateLimitedErrorMsg` (lower-case since Loki 3.6): the tenant's ingestion rate.
pub fn rate_limited(tenant: &str, limit_bytes: i64, lines: u64, bytes: u64) -> String {
    format!(
        "ingestion rate limit exceeded for user {tenant} (limit: {limit_bytes} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased"
    )
}

/// `validation.StreamLimitErrorMsg` (lower-case since Loki 3.6).
pub fn stream_limit(labels: &str, tenant: &str) -> String {
    format!(
        "maximum active stream limit exceeded when trying to create stream {labels}, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '{tenant}'"
    )
}

/// `validation.BlockedIngestionErrorMsg`.
pub fn blocked(tenant: &str, until_ns: i64, status: u16) -> String {
    format!(
        "ingestion blocked for user '{tenant}' until '{}' with status code '{status}'",
        rfc3339(until_ns)
    )
}

/// `validation.ErrStreamRateLimit.Error()`: still capitalised in Loki 3.7. Sizes are printed as
/// Loki's `flagext.ByteSize` does (`3MB`, `621B`).
pub fn per_stream_rate_limit(limit_bytes: u64, labels: &str, entry_bytes: u64) -> String {
    format!(
        "Per stream rate limit exceeded (limit: {}/sec) while attempting to ingest for stream '{labels}' totaling {}, consider splitting a stream via additional labels or contact your Loki administrator to see if the limit can be increased",
        datasize(limit_bytes),
        datasize(entry_bytes)
    )
}

/// `chunkenc.ErrTooFarBehind`.
pub fn too_far_behind(ts_ns: i64, cutoff_ns: i64) -> String {
    format!(
        "entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}",
        rfc3339(ts_ns),
        rfc3339(cutoff_ns)
    )
}

/// One line of the ingester's listing of refused entries (`errorForFailedEntries`), newline
/// included.
pub fn entry_ignored(ts_ns: i64, reason: &str) -> String {
    format!(
        "entry with timestamp {} ignored, reason: '{reason}',\n",
        go_time_string(ts_ns)
    )
}

/// The last line of the ingester's listing.
pub fn total_ignored(tenant: &str, ignored: usize, total: usize, labels: &str) -> String {
    format!("user '{tenant}', total ignored: {ignored} out of {total} for stream: {labels}")
}

/// `validation.MissingStreamsErrorMsg` (422).
pub const MISSING_STREAMS: &str = "error at least one valid stream is required for ingestion";

/// `couldn't parse labels: <parser error>` (400, the whole push).
pub fn unparsable_labels(error: &str) -> String {
    format!("couldn't parse labels: {error}")
}

/// The 413 of a body over `max_recv_msg_size`: `push.ErrRequestBodyTooLarge` around
/// `util.ErrMessageSizeTooLarge`.
pub fn body_too_large(size: u64, max: u64) -> String {
    format!("request body too large: message size too large than max ({size} vs {max})")
}

/// The 413 of a stream whose label text is over 16 MiB.
pub fn labels_too_large(size: usize, max: usize) -> String {
    format!(
        "request body too large: stream labels size {} exceeds limit of {}",
        humanize_bytes(size as u64),
        humanize_bytes(max as u64)
    )
}

/// `util.ErrMessageDecompressedSizeTooLarge` (a 400: Loki does not map it to 413).
pub fn decompressed_too_large(size: u64, max: u64) -> String {
    format!("decompressed message size too large than max ({size} vs {max})")
}

/// `parsePushRequestBody`'s last check, a 400: the body read was over `max_recv_msg_size`
/// although the JSON in it decoded.
pub fn compressed_too_large(size: u64, max: u64) -> String {
    format!("compressed message size {size} exceeds limit {max}")
}

/// `Content-Encoding %q not supported` (400).
pub fn unsupported_encoding(encoding: &str) -> String {
    format!(
        "Content-Encoding {} not supported",
        super::gofmt::go_quote(encoding)
    )
}

/// dskit's `ring.ErrEmptyRing`, answered 500 while no ingester is in the ring (Loki starting
/// or stopping).
pub const EMPTY_RING: &str = "empty ring";

/// `/ready` while the ingester has not joined the ring yet.
pub const READY_NO_TOKENS: &str = "Ingester not ready: this instance owns no tokens";

/// `/ready` during the lifecycler's `min_ready_duration`.
pub fn ready_waiting(delay: Duration) -> String {
    format!(
        "Ingester not ready: waiting for {} after being ready",
        go_duration(delay)
    )
}

/// `/ready` once shutdown was requested.
pub const READY_STOPPING: &str = "Application is stopping";

/// dskit's `user.ErrNoOrgID` (401).
pub const NO_ORG_ID: &str = "no org id";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_loki_37s() {
        assert_eq!(
            line_too_long(1024, "{job=\"app\"}", 2048),
            "max entry size '1024' bytes exceeded for stream '{job=\"app\"}' while adding an \
             entry with length '2048' bytes"
        );
        assert_eq!(
            per_stream_rate_limit(3 << 20, "{job=\"app\"}", 621),
            "Per stream rate limit exceeded (limit: 3MB/sec) while attempting to ingest for \
             stream '{job=\"app\"}' totaling 621B, consider splitting a stream via additional \
             labels or contact your Loki administrator to see if the limit can be increased"
        );
        assert_eq!(
            ready_waiting(Duration::from_secs(15)),
            "Ingester not ready: waiting for 15s after being ready"
        );
        assert_eq!(
            blocked("team-b", 0, 260),
            "ingestion blocked for user 'team-b' until '1970-01-01T00:00:00Z' with status code '260'"
        );
        assert_eq!(
            labels_too_large(20_000_000, 1 << 24),
            "request body too large: stream labels size 20 MB exceeds limit of 17 MB"
        );
        assert_eq!(
            unsupported_encoding("br"),
            "Content-Encoding \"br\" not supported"
        );
    }
}
