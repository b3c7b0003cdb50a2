-- Day-by-day changes in the number of distinct merchants a customer used in the trailing 7 and 30 days,
-- one row per customer and day with a change. customer_features turns them into counts with a running
-- sum, which avoids joining every customer-day to 30 days of transactions (COUNT(DISTINCT) is not
-- available as a window function on Postgres).
--
-- A visit (customer, merchant, day d) keeps the merchant in the N-day window for feature dates
-- d .. d + N - 1. Cutting that interval at the pair's next visit makes the intervals of one pair
-- disjoint, so the number of distinct merchants on a day is the number of intervals covering it:
-- +1 on the visit day, -1 on min(d + N, next visit day).

with visits as (

    select distinct customer_id, merchant_id, event_date
    from {{ ref('stg_transactions') }}

),

visits_with_next as (

    select
        customer_id,
        event_date,
        lead(event_date) over (
            partition by customer_id, merchant_id
            order by event_date
        ) as next_visit_date,
        {{ add_days('event_date', 7) }} as leaves_7d_window,
        {{ add_days('event_date', 30) }} as leaves_30d_window
    from visits

),

changes as (

    select customer_id, event_date as change_date, 1 as change_7d, 1 as change_30d
    from visits_with_next

    union all

    select
        customer_id,
        case
            when next_visit_date < leaves_7d_window then next_visit_date else leaves_7d_window
        end as change_date,
        -1 as change_7d,
        0 as change_30d
    from visits_with_next

    union all

    select
        customer_id,
        case
            when next_visit_date < leaves_30d_window then next_visit_date else leaves_30d_window
        end as change_date,
        0 as change_7d,
        -1 as change_30d
    from visits_with_next

)

select
    customer_id,
    change_date,
    cast(sum(change_7d) as {{ dbt.type_bigint() }}) as distinct_merchants_7d_change,
    cast(sum(change_30d) as {{ dbt.type_bigint() }}) as distinct_merchants_30d_change
from changes
group by customer_id, change_date
