-- merchant_risk's labelled decisions: the merchant-days of merchant_days, labelled with whether a fraud on
-- any of the merchant's transactions was reported in the 7 days from the decision (event_ts, the next
-- midnight). Only days whose 7-day window has closed in the label data are kept: a younger day's label is
-- not known yet.

with fraud_reports as (

    select txn.merchant_id, labels.reported_at
    from {{ ref('stg_labels') }} as labels
    inner join {{ ref('stg_transactions') }} as txn
        on txn.transaction_id = labels.transaction_id
    where labels.is_fraud

),

labels_until as (

    select max(reported_at) as reported_until from {{ ref('stg_labels') }}

),

windows as (

    select days.merchant_id, days.event_ts, days.txn_count,
        cast({{ dbt.dateadd('day', 7, 'days.event_ts') }} as {{ dbt.type_timestamp() }}) as window_end
    from {{ ref('merchant_days') }} as days
    cross join labels_until
    where cast({{ dbt.dateadd('day', 7, 'days.event_ts') }} as {{ dbt.type_timestamp() }})
        <= labels_until.reported_until

)

select
    windows.merchant_id,
    windows.event_ts,
    windows.txn_count,
    count(reports.reported_at) as fraud_reports_7d,
    count(reports.reported_at) > 0 as has_fraud_report_7d
from windows
left join fraud_reports as reports
    on reports.merchant_id = windows.merchant_id
    and reports.reported_at >= windows.event_ts
    and reports.reported_at < windows.window_end
group by windows.merchant_id, windows.event_ts, windows.txn_count
