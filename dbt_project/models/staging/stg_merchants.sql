-- Current merchant attributes: one row per merchant_id. The raw table may hold several snapshots;
-- the row from the newest snapshot (then the latest load) wins, so a merchant missing from the newest
-- snapshot keeps its last known attributes rather than disappearing.

with ranked as (

    select
        merchant_id,
        category,
        country,
        risk_tier,
        _partition_date,
        _loaded_at,
        row_number() over (
            partition by merchant_id
            order by _partition_date desc nulls last, _loaded_at desc nulls last, _source_file desc nulls last
        ) as snapshot_rank
    from {{ source('raw', 'merchants') }}

)

select
    merchant_id,
    category,
    country,
    risk_tier,
    _partition_date as snapshot_date,
    _loaded_at
from ranked
where snapshot_rank = 1
