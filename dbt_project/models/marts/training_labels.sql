-- The training set's spine: one row per labelled transaction with its current label (latest
-- reported_at wins), the transaction's own attributes and, for slicing evaluation metrics, the
-- customer's and merchant's current snapshot attributes. Point-in-time features are joined to it by
-- Feast on (customer_id / merchant_id, event_ts); reported_at tells when the label became known.

select
    labels.transaction_id,
    txn.customer_id,
    txn.merchant_id,
    txn.event_ts,
    txn.amount,
    txn.currency,
    txn.channel,
    txn.country,
    labels.is_fraud,
    labels.reported_at,
    customers.segment,
    customers.region,
    customers.home_country,
    merchants.category
from {{ ref('stg_labels') }} as labels
inner join {{ ref('stg_transactions') }} as txn
    on txn.transaction_id = labels.transaction_id
left join {{ ref('stg_customers') }} as customers
    on customers.customer_id = txn.customer_id
left join {{ ref('stg_merchants') }} as merchants
    on merchants.merchant_id = txn.merchant_id
