-- Current customer attributes: one row per customer_id. The raw table may hold several snapshots;
-- the row from the newest snapshot (then the latest load) wins, so a customer missing from the newest
-- snapshot keeps their last known attributes rather than disappearing.

with ranked as (

    select
        customer_id,
        segment,
        region,
        home_country,
        signup_date,
        _partition_date,
        _loaded_at,
        row_number() over (
            partition by customer_id
            order by _partition_date desc nulls last, _loaded_at desc nulls last, _source_file desc nulls last
        ) as snapshot_rank
    from {{ source('raw', 'customers') }}

)

select
    customer_id,
    segment,
    region,
    home_country,
    cast(signup_date as date) as signup_date,
    _partition_date as snapshot_date,
    _loaded_at
from ranked
where snapshot_rank = 1
