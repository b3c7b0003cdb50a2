-- Merchant x day spine with the day's activity: one row per merchant and day, from the merchant's first
-- transaction day to the last day with data (days without transactions are zero-filled), so that
-- trailing windows in merchant_features are plain ROWS frames.

with first_days as (

    select merchant_id, min(event_date) as first_txn_date
    from {{ ref('stg_transactions') }}
    group by merchant_id

),

spine as (

    select first_days.merchant_id, dates.feature_date, dates.feature_ts
    from first_days
    inner join {{ ref('int_feature_dates') }} as dates
        on dates.feature_date >= first_days.first_txn_date

),

daily as (

    select
        merchant_id,
        event_date,
        count(*) as txn_count,
        sum(amount) as amount_sum
    from {{ ref('stg_transactions') }}
    group by merchant_id, event_date

)

select
    spine.merchant_id,
    spine.feature_date,
    spine.feature_ts,
    cast(coalesce(daily.txn_count, 0) as {{ dbt.type_bigint() }}) as txn_count,
    cast(coalesce(daily.amount_sum, 0) as {{ type_double() }}) as amount_sum
from spine
left join daily
    on daily.merchant_id = spine.merchant_id
    and daily.event_date = spine.feature_date
