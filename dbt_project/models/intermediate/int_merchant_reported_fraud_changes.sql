-- Day-by-day changes in each merchant's point-in-time 30-day fraud count, one row per merchant and day
-- with a change; merchant_features turns them into counts with a running sum (a range join of every
-- merchant-day with the labels is slow and plan-sensitive on Postgres).
--
-- A transaction counts on feature date D when its event date is in [D - 29, D] and its label as known
-- at feature_ts = D + 1 day 00:00 says fraud. The label known at feature_ts is the version with
-- reported_at < feature_ts that is not superseded yet (superseded_at IS NULL or >= feature_ts), so
-- labels reported later never leak into earlier features and a correction only counts from the moment
-- it was reported. For naive timestamps, reported_at < D + 1 day 00:00 is cast(reported_at as date) <= D
-- and superseded_at >= D + 1 day 00:00 is D < cast(superseded_at as date). A fraud version therefore
-- counts on the feature dates
--     from max(event_date, date(reported_at))  to  min(event_date + 29, date(superseded_at) - 1),
-- i.e. +1 on the first date and -1 on min(event_date + 30, date(superseded_at)), when that range is not
-- empty. One version per transaction is in force at any instant, so transactions are not double counted.

with label_history as (

    -- the current labels (in force until further notice) and the versions they corrected
    select transaction_id, is_fraud, reported_at, cast(null as {{ dbt.type_timestamp() }}) as superseded_at
    from {{ ref('stg_labels') }}

    union all

    select transaction_id, is_fraud, reported_at, superseded_at
    from {{ ref('stg_superseded_labels') }}

),

fraud_label_versions as (

    select
        txn.merchant_id,
        txn.event_date,
        cast(labels.reported_at as date) as reported_date,
        cast(labels.superseded_at as date) as superseded_date,
        {{ add_days('txn.event_date', 30) }} as leaves_30d_window
    from label_history as labels
    inner join {{ ref('stg_transactions') }} as txn
        on txn.transaction_id = labels.transaction_id
    where labels.is_fraud

),

counted_ranges as (

    select
        merchant_id,
        case when reported_date > event_date then reported_date else event_date end as counted_from,
        case
            when superseded_date < leaves_30d_window then superseded_date else leaves_30d_window
        end as counted_until  -- exclusive
    from fraud_label_versions

),

changes as (

    select merchant_id, counted_from as change_date, 1 as change
    from counted_ranges
    where counted_from < counted_until

    union all

    select merchant_id, counted_until as change_date, -1 as change
    from counted_ranges
    where counted_from < counted_until

)

select
    merchant_id,
    change_date,
    cast(sum(change) as {{ dbt.type_bigint() }}) as reported_fraud_30d_change
from changes
group by merchant_id, change_date
