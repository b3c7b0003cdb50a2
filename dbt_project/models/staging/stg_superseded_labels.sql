-- Label versions that were later corrected: one row per (transaction_id, reported_at) for every label
-- of a transaction except its current one (which is in stg_labels), with the instant the next version
-- was reported. Together with stg_labels this is the full label history, which point-in-time features
-- need: at an instant T the label known for a transaction is the version with reported_at < T that was
-- not yet superseded (superseded_at IS NULL or superseded_at >= T). Empty when labels are never corrected.

select transaction_id, is_fraud, reported_at, superseded_at, _source_file, _loaded_at
from ({{ label_versions() }}) as versions
where superseded_at is not null
