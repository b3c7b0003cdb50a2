-- One row per merchant and day it transacted: merchant_risk's decisions. Each is taken at the next
-- midnight (event_ts), when the day's merchant features become valid; batch scoring reads a landed day's
-- rows, merchant_risk_labels labels the rows whose 7-day window has closed.

select
    merchant_id,
    event_date,
    {{ start_of_next_day('event_date') }} as event_ts,
    count(*) as txn_count
from {{ ref('stg_transactions') }}
group by merchant_id, event_date
