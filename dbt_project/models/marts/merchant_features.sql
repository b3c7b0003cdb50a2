{{ config(post_hook="{{ export_for_feast() }}") }}

-- Merchant features for Feast: one row per merchant and feature date, from the merchant's first
-- transaction day to the last day with data, valid from feature_ts (00:00 of the next day). The N-day
-- window is event dates in [feature_date - N + 1, feature_date]. Fraud counts are point-in-time: only
-- labels reported before feature_ts count, as known at feature_ts (see int_merchant_reported_fraud_changes).

with daily as (

    select
        activity.merchant_id,
        activity.feature_date,
        activity.feature_ts,
        activity.txn_count,
        activity.amount_sum,
        coalesce(fraud_changes.reported_fraud_30d_change, 0) as reported_fraud_30d_change
    from {{ ref('int_merchant_daily_activity') }} as activity
    left join {{ ref('int_merchant_reported_fraud_changes') }} as fraud_changes
        on fraud_changes.merchant_id = activity.merchant_id
        and fraud_changes.change_date = activity.feature_date

),

with_fraud as (

    -- the spine is dense (one row per day), so "N - 1 preceding rows" is "the previous N - 1 days"
    select
        merchant_id,
        feature_date,
        feature_ts,
        sum(txn_count) over last_7_days as txn_count_7d,
        sum(txn_count) over last_30_days as txn_count_30d,
        sum(amount_sum) over last_7_days as amount_sum_7d,
        sum(amount_sum) over last_30_days as amount_sum_30d,
        sum(reported_fraud_30d_change) over up_to_today as reported_fraud_count_30d
    from daily
    window
        last_7_days as (partition by merchant_id order by feature_date rows between 6 preceding and current row),
        last_30_days as (partition by merchant_id order by feature_date rows between 29 preceding and current row),
        up_to_today as (partition by merchant_id order by feature_date rows between unbounded preceding and current row)

)

select
    with_fraud.merchant_id,
    with_fraud.feature_date,
    with_fraud.feature_ts,
    cast(with_fraud.txn_count_7d as {{ dbt.type_bigint() }}) as txn_count_7d,
    cast(with_fraud.txn_count_30d as {{ dbt.type_bigint() }}) as txn_count_30d,
    cast(with_fraud.amount_sum_7d as {{ type_double() }}) as amount_sum_7d,
    cast(with_fraud.amount_sum_30d as {{ type_double() }}) as amount_sum_30d,
    cast(with_fraud.reported_fraud_count_30d as {{ dbt.type_bigint() }}) as reported_fraud_count_30d,
    cast(with_fraud.reported_fraud_count_30d as {{ type_double() }})
        / nullif(with_fraud.txn_count_30d, 0) as fraud_rate_30d,
    merchants.category,
    merchants.risk_tier
from with_fraud
left join {{ ref('stg_merchants') }} as merchants
    on merchants.merchant_id = with_fraud.merchant_id
