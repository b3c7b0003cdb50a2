{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='_partition_date',
    on_schema_change='fail',
    pre_hook="{{ forget_built_partitions() }}",
    post_hook="{{ record_built_partitions(['transactions']) }}",
) }}
{#- A table, not a view: every feature model, the labels mart and several tests read it, and the
    deduplication window over all raw rows should run once per build, not once per reader. Incremental by
    partition (macros/incremental.sql): a build replaces the partitions loaded, replaced or removed since
    the previous one, so a landed day costs that day. Deduplicating within those partitions is the same as
    over all rows because ingestion keeps transaction ids unique across partitions (`unique_key` check:
    a file repeating an id loaded on another day is quarantined). -#}
{%- set changes = changed_partitions(['transactions']) %}

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
    {%- if changes is not none %}
    where cast(_partition_date as date) in (
        {%- for day in changes['dates'] %}{{ date_literal(day) }}, {% endfor %}cast(null as date)
    )
    {%- endif %}

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
