{#
    label_versions(transactions=none): every version of the fraud labels, one row per (transaction_id,
    reported_at) (the same row loaded twice is kept once: latest load), with superseded_at, the instant the
    next version of the same transaction's label was reported (null for the current version). At an instant
    T the label known for a transaction is the version with reported_at < T and superseded_at null or >= T.

    With `transactions` (a relation with a transaction_id column), only the labels of those transactions:
    the filter comes before the ranking, which partitions by transaction_id, so the versions are the same as
    over all labels, and a feature build reads the labels of its window instead of the whole history.
#}
{% macro label_versions(transactions=none) -%}
    select
        transaction_id,
        is_fraud,
        reported_at,
        lead(reported_at) over (partition by transaction_id order by reported_at asc nulls last) as superseded_at,
        _source_file,
        _loaded_at
    from (
        select
            transaction_id,
            is_fraud,
            cast(reported_at as {{ dbt.type_timestamp() }}) as reported_at,
            _source_file,
            _loaded_at,
            row_number() over (
                partition by transaction_id, reported_at
                order by _loaded_at desc nulls last, _source_file desc nulls last, is_fraud desc
            ) as load_rank
        from {{ source('raw', 'labels') }}
        {%- if transactions %}
        where transaction_id in (select transaction_id from {{ transactions }})
        {%- endif %}
    ) as deduplicated
    where load_rank = 1
{%- endmacro %}
