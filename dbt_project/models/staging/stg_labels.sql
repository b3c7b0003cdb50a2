-- The current fraud label of each labelled transaction: one row per transaction_id. A transaction can
-- have several label rows: a later reported_at is a correction and wins; the same row loaded twice is
-- kept once (latest load). Earlier versions are in stg_superseded_labels.

with ranked as (

    select
        transaction_id,
        is_fraud,
        reported_at,
        _source_file,
        _loaded_at,
        row_number() over (
            partition by transaction_id
            order by reported_at desc nulls last, _loaded_at desc nulls last, _source_file desc nulls last,
                is_fraud desc
        ) as version_rank
    from {{ source('raw', 'labels') }}

)

select
    transaction_id,
    is_fraud,
    cast(reported_at as {{ dbt.type_timestamp() }}) as reported_at,
    _source_file,
    _loaded_at
from ranked
where version_rank = 1
