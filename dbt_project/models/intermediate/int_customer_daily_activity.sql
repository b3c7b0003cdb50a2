-- Customer x day spine with the day's activity: one row per customer and day, from the customer's first
-- transaction day to the last day with data (days without transactions are zero-filled), so that
-- trailing windows in customer_features are plain ROWS frames.

with first_days as (

    select customer_id, min(event_date) as first_txn_date
    from {{ ref('stg_transactions') }}
    group by customer_id

),

spine as (

    select first_days.customer_id, dates.feature_date, dates.feature_ts
    from first_days
    inner join {{ ref('int_feature_dates') }} as dates
        on dates.feature_date >= first_days.first_txn_date

),

daily as (

    select
        txn.customer_id,
        txn.event_date,
        count(*) as txn_count,
        sum(txn.amount) as amount_sum,
        max(txn.amount) as amount_max,
        -- a transaction is foreign when its country differs from the customer's home country
        sum(case when txn.country <> customers.home_country then 1 else 0 end) as foreign_txn_count
    from {{ ref('stg_transactions') }} as txn
    left join {{ ref('stg_customers') }} as customers
        on customers.customer_id = txn.customer_id
    group by txn.customer_id, txn.event_date

)

select
    spine.customer_id,
    spine.feature_date,
    spine.feature_ts,
    cast(coalesce(daily.txn_count, 0) as {{ dbt.type_bigint() }}) as txn_count,
    cast(coalesce(daily.amount_sum, 0) as {{ type_double() }}) as amount_sum,
    cast(daily.amount_max as {{ type_double() }}) as amount_max,
    cast(coalesce(daily.foreign_txn_count, 0) as {{ dbt.type_bigint() }}) as foreign_txn_count
from spine
left join daily
    on daily.customer_id = spine.customer_id
    and daily.event_date = spine.feature_date
