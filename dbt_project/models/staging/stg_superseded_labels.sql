-- Label versions that were later corrected: one row per (transaction_id, reported_at) for every label
-- of a transaction except its current one (which is in stg_labels), with the instant the next version
-- was reported. Together with stg_labels this is the full label history, which point-in-time features
-- need: at an instant T the label known for a transaction is the version with reported_at < T that was
-- not yet superseded (superseded_at IS NULL or superseded_at >= T). Empty when labels are never corrected.

with deduplicated as (

    -- the same label row loaded twice is kept once (latest load)
    select
        transaction_id,
        is_fraud,
        reported_at,
        _source_file,
        _loaded_at,
        row_number() over (
            partition by transaction_id, reported_at
            order by _loaded_at desc nulls last, _source_file desc nulls last, is_fraud desc
        ) as load_rank
    from {{ source('raw', 'labels') }}

),

versions as (

    select
        transaction_id,
        is_fraud,
        cast(reported_at as {{ dbt.type_timestamp() }}) as reported_at,
        lead(cast(reported_at as {{ dbt.type_timestamp() }})) over (
            partition by transaction_id
            order by reported_at asc nulls last
        ) as superseded_at,
        _source_file,
        _loaded_at
    from deduplicated
    where load_rank = 1

)

select
    transaction_id,
    is_fraud,
    reported_at,
    superseded_at,
    _source_file,
    _loaded_at
from versions
where superseded_at is not null
