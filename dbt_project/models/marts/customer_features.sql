{{ config(post_hook="{{ export_for_feast() }}") }}

-- Customer features for Feast: one row per customer and feature date, from the customer's first
-- transaction day to the last day with data. A row describes the trailing windows ending on
-- feature_date and is valid from feature_ts (00:00 of the next day); it only uses transactions with
-- event_ts < feature_ts. The N-day window is event dates in [feature_date - N + 1, feature_date].

with daily as (

    select
        activity.customer_id,
        activity.feature_date,
        activity.feature_ts,
        activity.txn_count,
        activity.amount_sum,
        activity.amount_max,
        activity.foreign_txn_count,
        coalesce(merchant_changes.distinct_merchants_7d_change, 0) as distinct_merchants_7d_change,
        coalesce(merchant_changes.distinct_merchants_30d_change, 0) as distinct_merchants_30d_change
    from {{ ref('int_customer_daily_activity') }} as activity
    left join {{ ref('int_customer_distinct_merchant_changes') }} as merchant_changes
        on merchant_changes.customer_id = activity.customer_id
        and merchant_changes.change_date = activity.feature_date

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
