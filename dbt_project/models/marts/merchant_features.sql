{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='feature_date',
    on_schema_change='fail',
    indexes=feast_lookup_indexes(['merchant_id']),
    pre_hook="{{ forget_built_partitions() }}",
    post_hook=[
        "{{ export_for_feast(feature_rebuild_start(['transactions', 'labels'], ['merchants'])) }}",
        "{{ record_built_partitions(['transactions', 'labels', 'merchants']) }}",
    ],
) }}
-- depends_on: {{ source('raw', 'transactions') }}
-- depends_on: {{ source('raw', 'labels') }}
-- depends_on: {{ source('raw', 'merchants') }}
{%- set rebuild_from = feature_rebuild_start(['transactions', 'labels'], ['merchants']) %}

-- Merchant features for Feast: one row per merchant and feature date, from the merchant's first
-- transaction day to the last day with data, valid from feature_ts (00:00 of the next day). The N-day
-- window is event dates in [feature_date - N + 1, feature_date]. Fraud counts are point-in-time: only
-- labels reported before feature_ts count, as known at feature_ts.
--
-- Incremental by day like customer_features: a landed day of transactions, or of labels (a label
-- reported on day R changes the counts from R on), rebuilds the dates from that day; a new merchants
-- snapshot (category, risk_tier are on every row) rebuilds the whole mart.

with transactions as (

    select transaction_id, merchant_id, amount, event_date
    from {{ ref('stg_transactions') }}
    {%- if rebuild_from %}
    where event_date >= {{ feature_read_from(rebuild_from) }}
    {%- endif %}

),

daily_activity as (

    select merchant_id, event_date, count(*) as txn_count, sum(amount) as amount_sum
    from transactions
    group by merchant_id, event_date

),

label_history as (

    -- every version of the labels of the transactions read (stg_labels holds the current ones,
    -- stg_superseded_labels the corrected ones: together, the same versions over all transactions)
    {{ label_versions('transactions') }}

),

counted_ranges as (

    -- The point-in-time 30-day fraud count as day-by-day changes (a range join of every merchant-day with
    -- the labels is slow and plan-sensitive on Postgres). A transaction counts on feature date D when its
    -- event date is in [D - 29, D] and its label as known at feature_ts = D + 1 day 00:00 says fraud: the
    -- version with reported_at < feature_ts not superseded yet (superseded_at IS NULL or >= feature_ts),
    -- so labels reported later never leak into earlier features and a correction only counts from the
    -- moment it was reported. For naive timestamps, reported_at < D + 1 day 00:00 is
    -- cast(reported_at as date) <= D and superseded_at >= D + 1 day 00:00 is D < cast(superseded_at as
    -- date). A fraud version therefore counts on the feature dates
    --     from max(event_date, date(reported_at))  to  min(event_date + 29, date(superseded_at) - 1),
    -- i.e. +1 on the first date and -1 on min(event_date + 30, date(superseded_at)), when that range is
    -- not empty. One version per transaction is in force at any instant: no double counting. Only
    -- transactions read (from read_from) can count on a rebuilt date.
    select
        merchant_id,
        case when reported_date > event_date then reported_date else event_date end as counted_from,
        case
            when superseded_date < leaves_30d_window then superseded_date else leaves_30d_window
        end as counted_until  -- exclusive
    from (
        select
            txn.merchant_id,
            txn.event_date,
            cast(labels.reported_at as date) as reported_date,
            cast(labels.superseded_at as date) as superseded_date,
            {{ add_days('txn.event_date', 30) }} as leaves_30d_window
        from label_history as labels
        inner join transactions as txn
            on txn.transaction_id = labels.transaction_id
        where labels.is_fraud
    ) as fraud_label_versions

),

fraud_changes as (

    select merchant_id, change_date, sum(change) as reported_fraud_30d_change
    from (
        select merchant_id, counted_from as change_date, 1 as change
        from counted_ranges
        where counted_from < counted_until

        union all

        select merchant_id, counted_until as change_date, -1 as change
        from counted_ranges
        where counted_from < counted_until
    ) as changes
    group by merchant_id, change_date

),

daily as (

    -- the dense merchant x day spine with the day's figures (zero-filled), so that trailing windows are
    -- plain ROWS frames
    select
        spine.merchant_id,
        spine.feature_date,
        spine.feature_ts,
        coalesce(activity.txn_count, 0) as txn_count,
        coalesce(activity.amount_sum, 0) as amount_sum,
        coalesce(fraud_changes.reported_fraud_30d_change, 0) as reported_fraud_30d_change
    from ({{ entity_spine('merchant_id', 'transactions', rebuild_from) }}) as spine
    left join daily_activity as activity
        on activity.merchant_id = spine.merchant_id
        and activity.event_date = spine.feature_date
    left join fraud_changes
        on fraud_changes.merchant_id = spine.merchant_id
        and fraud_changes.change_date = spine.feature_date

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
{%- if rebuild_from %}
where with_fraud.feature_date >= {{ date_literal(rebuild_from) }}
{%- endif %}
