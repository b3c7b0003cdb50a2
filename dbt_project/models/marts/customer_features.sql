{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='feature_date',
    on_schema_change='fail',
    indexes=feast_lookup_indexes(['customer_id']),
    pre_hook="{{ forget_built_partitions() }}",
    post_hook=[
        "{{ export_for_feast(feature_rebuild_start(['transactions'], ['customers'])) }}",
        "{{ record_built_partitions(['transactions', 'customers']) }}",
    ],
) }}
-- depends_on: {{ source('raw', 'transactions') }}
-- depends_on: {{ source('raw', 'customers') }}
{%- set rebuild_from = feature_rebuild_start(['transactions'], ['customers']) %}

-- Customer features for Feast: one row per customer and feature date, from the customer's first
-- transaction day to the last day with data. A row describes the trailing windows ending on
-- feature_date and is valid from feature_ts (00:00 of the next day); it only uses transactions with
-- event_ts < feature_ts. The N-day window is event dates in [feature_date - N + 1, feature_date].
--
-- Incremental by day (macros/incremental.sql): a build deletes and recomputes the feature dates from the
-- first day a load changed (a landed day: that day alone) and reads only the transactions their windows
-- need (macros/feature_spines.sql). The current snapshot's home_country is part of every row, so a new
-- customers snapshot rebuilds the whole mart, as a first build and --full-refresh do.

with transactions as (

    select customer_id, merchant_id, amount, country, event_date
    from {{ ref('stg_transactions') }}
    {%- if rebuild_from %}
    where event_date >= {{ feature_read_from(rebuild_from) }}
    {%- endif %}

),

daily_activity as (

    -- the day's activity per customer; a transaction is foreign when its country differs from the
    -- customer's home country
    select
        txn.customer_id,
        txn.event_date,
        count(*) as txn_count,
        sum(txn.amount) as amount_sum,
        max(txn.amount) as amount_max,
        sum(case when txn.country <> customers.home_country then 1 else 0 end) as foreign_txn_count
    from transactions as txn
    left join {{ ref('stg_customers') }} as customers
        on customers.customer_id = txn.customer_id
    group by txn.customer_id, txn.event_date

),

visits_with_next as (

    -- Distinct merchants in the trailing 7 and 30 days, as day-by-day changes (COUNT(DISTINCT) is not a
    -- window function on Postgres, and a 30-day range join of every customer-day is slow). A visit
    -- (customer, merchant, day d) keeps the merchant in the N-day window for feature dates d .. d + N - 1;
    -- cut at the pair's next visit, the intervals of one pair are disjoint, so the number of distinct
    -- merchants on a day is the number of intervals covering it: +1 on the visit day, -1 on
    -- min(d + N, next visit day). A running sum from read_from is exact for the rebuilt dates: a visit
    -- before read_from has both its changes on or before rebuild_from.
    select
        customer_id,
        event_date,
        lead(event_date) over (partition by customer_id, merchant_id order by event_date) as next_visit_date,
        {{ add_days('event_date', 7) }} as leaves_7d_window,
        {{ add_days('event_date', 30) }} as leaves_30d_window
    from (select distinct customer_id, merchant_id, event_date from transactions) as visits

),

merchant_changes as (

    select customer_id, change_date, sum(change_7d) as distinct_merchants_7d_change,
        sum(change_30d) as distinct_merchants_30d_change
    from (
        select customer_id, event_date as change_date, 1 as change_7d, 1 as change_30d
        from visits_with_next

        union all

        select
            customer_id,
            case when next_visit_date < leaves_7d_window then next_visit_date else leaves_7d_window end,
            -1,
            0
        from visits_with_next

        union all

        select
            customer_id,
            case when next_visit_date < leaves_30d_window then next_visit_date else leaves_30d_window end,
            0,
            -1
        from visits_with_next
    ) as changes
    group by customer_id, change_date

),

daily as (

    -- the dense customer x day spine with the day's figures (zero-filled), so that trailing windows are
    -- plain ROWS frames
    select
        spine.customer_id,
        spine.feature_date,
        spine.feature_ts,
        coalesce(activity.txn_count, 0) as txn_count,
        coalesce(activity.amount_sum, 0) as amount_sum,
        activity.amount_max,
        coalesce(activity.foreign_txn_count, 0) as foreign_txn_count,
        coalesce(merchant_changes.distinct_merchants_7d_change, 0) as distinct_merchants_7d_change,
        coalesce(merchant_changes.distinct_merchants_30d_change, 0) as distinct_merchants_30d_change
    from ({{ entity_spine('customer_id', 'transactions', rebuild_from) }}) as spine
    left join daily_activity as activity
        on activity.customer_id = spine.customer_id
        and activity.event_date = spine.feature_date
    left join merchant_changes
        on merchant_changes.customer_id = spine.customer_id
        and merchant_changes.change_date = spine.feature_date

),

windowed as (

    -- the spine is dense (one row per day), so "N - 1 preceding rows" is "the previous N - 1 days"
    select
        customer_id,
        feature_date,
        feature_ts,
        txn_count as txn_count_1d,
        sum(txn_count) over last_7_days as txn_count_7d,
        sum(txn_count) over last_30_days as txn_count_30d,
        amount_sum as amount_sum_1d,
        sum(amount_sum) over last_7_days as amount_sum_7d,
        sum(amount_sum) over last_30_days as amount_sum_30d,
        amount_max as amount_max_1d,
        max(amount_max) over last_7_days as amount_max_7d,
        max(amount_max) over last_30_days as amount_max_30d,
        sum(distinct_merchants_7d_change) over up_to_today as distinct_merchants_7d,
        sum(distinct_merchants_30d_change) over up_to_today as distinct_merchants_30d,
        sum(foreign_txn_count) over last_7_days as foreign_txn_count_7d,
        sum(foreign_txn_count) over last_30_days as foreign_txn_count_30d
    from daily
    window
        last_7_days as (partition by customer_id order by feature_date rows between 6 preceding and current row),
        last_30_days as (partition by customer_id order by feature_date rows between 29 preceding and current row),
        up_to_today as (partition by customer_id order by feature_date rows between unbounded preceding and current row)

)

select
    windowed.customer_id,
    windowed.feature_date,
    windowed.feature_ts,
    cast(windowed.txn_count_1d as {{ dbt.type_bigint() }}) as txn_count_1d,
    cast(windowed.txn_count_7d as {{ dbt.type_bigint() }}) as txn_count_7d,
    cast(windowed.txn_count_30d as {{ dbt.type_bigint() }}) as txn_count_30d,
    cast(windowed.amount_sum_1d as {{ type_double() }}) as amount_sum_1d,
    cast(windowed.amount_sum_7d as {{ type_double() }}) as amount_sum_7d,
    cast(windowed.amount_sum_30d as {{ type_double() }}) as amount_sum_30d,
    cast(windowed.amount_sum_1d as {{ type_double() }}) / nullif(windowed.txn_count_1d, 0) as amount_avg_1d,
    cast(windowed.amount_sum_7d as {{ type_double() }}) / nullif(windowed.txn_count_7d, 0) as amount_avg_7d,
    cast(windowed.amount_sum_30d as {{ type_double() }}) / nullif(windowed.txn_count_30d, 0) as amount_avg_30d,
    cast(windowed.amount_max_1d as {{ type_double() }}) as amount_max_1d,
    cast(windowed.amount_max_7d as {{ type_double() }}) as amount_max_7d,
    cast(windowed.amount_max_30d as {{ type_double() }}) as amount_max_30d,
    cast(windowed.distinct_merchants_7d as {{ dbt.type_bigint() }}) as distinct_merchants_7d,
    cast(windowed.distinct_merchants_30d as {{ dbt.type_bigint() }}) as distinct_merchants_30d,
    cast(windowed.foreign_txn_count_7d as {{ type_double() }}) / nullif(windowed.txn_count_7d, 0) as foreign_share_7d,
    cast(windowed.foreign_txn_count_30d as {{ type_double() }}) / nullif(windowed.txn_count_30d, 0) as foreign_share_30d,
    customers.home_country
from windowed
left join {{ ref('stg_customers') }} as customers
    on customers.customer_id = windowed.customer_id
{%- if rebuild_from %}
where windowed.feature_date >= {{ date_literal(rebuild_from) }}
{%- endif %}
