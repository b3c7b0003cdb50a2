-- The feature calendar: one row per day from the first to the last day with transactions, with the
-- instant from which that day's features are valid (00:00 of the next day). Dense by construction, so
-- the feature spines built on it have no gaps and ROWS window frames count days.

with days as (

    {{ date_series(
        'select min(event_date) from ' ~ ref('stg_transactions'),
        'select max(event_date) from ' ~ ref('stg_transactions')
    ) }}

)

select
    date_day as feature_date,
    {{ start_of_next_day('date_day') }} as feature_ts
from days
