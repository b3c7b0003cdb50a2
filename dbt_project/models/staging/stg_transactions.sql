{{ config(materialized='table') }}
{#- A table, not a view: every feature model, the labels mart and several tests read it, and the
    deduplication window over all raw rows should run once per build, not once per reader. -#}

-- One row per transaction_id. A transaction delivered in more than one load keeps the row of the
-- latest load (_loaded_at, then _source_file as a deterministic tie-break).

with ranked as (

    select
        transaction_id,
        customer_id,
        merchant_id,
        amount,
        currency,
        channel,
        country,
        event_ts,
        _partition_date,
        _source_file,
        _loaded_at,
        row_number() over (
            partition by transaction_id
            order by _loaded_at desc nulls last, _source_file desc nulls last
        ) as load_rank
    from {{ source('raw', 'transactions') }}

)

select
    transaction_id,
    customer_id,
    merchant_id,
    cast(amount as {{ type_double() }}) as amount,
    currency,
    channel,
    country,
    cast(event_ts as {{ dbt.type_timestamp() }}) as event_ts,
    cast(event_ts as date) as event_date,
    _partition_date,
    _source_file,
    _loaded_at
from ranked
where load_rank = 1
