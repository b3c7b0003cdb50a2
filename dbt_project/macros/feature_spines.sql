{#
    The pieces both feature marts build their rows from, for the feature dates a build (re)computes.

    A mart (re)computes the feature dates from `rebuild_from` to the newest day with transactions (all of
    them when `rebuild_from` is none). Their trailing windows reach back longest_window_days() - 1 days, so
    a build reads transactions from `read_from` = rebuild_from - 29 on, and nothing older: the cost of a
    day's build does not depend on the history's length.
#}

{# The first event date a build reads (none: all of them). #}
{% macro feature_read_from(rebuild_from) -%}
    {%- if rebuild_from -%}
        {{ add_days(date_literal(rebuild_from), 1 - longest_window_days() | int) }}
    {%- endif -%}
{%- endmacro %}


{#
    feature_dates(rebuild_from): the feature calendar the windows run over, one row per day from read_from
    (or the first day with transactions) to the newest day with transactions, with the instant each day's
    features become valid (00:00 of the next day). Dense by construction, so the spines built on it have no
    gaps and ROWS window frames count days.
#}
{% macro feature_dates(rebuild_from) -%}
    select date_day as feature_date, {{ start_of_next_day('date_day') }} as feature_ts
    from (
        {{ date_series(
            feature_read_from(rebuild_from) if rebuild_from else 'select min(event_date) from ' ~ ref('stg_transactions'),
            'select max(event_date) from ' ~ ref('stg_transactions')
        ) }}
    ) as days
{%- endmacro %}


{#
    entity_spine(key, transactions, rebuild_from): one row per entity (`key`) and feature date, from the
    entity's first transaction day to the newest day (a dense spine: days without transactions are rows
    too). `transactions` is the relation of the transactions read. An entity that already had a row on the
    day before `rebuild_from` in this mart starts at read_from: days before its first transaction add
    nothing to a window (zero counts, no maximum), and only dates from rebuild_from on are kept.
#}
{% macro entity_spine(key, transactions, rebuild_from) -%}
    select first_days.{{ key }}, dates.feature_date, dates.feature_ts
    from (
        select {{ key }}, min(first_date) as first_date
        from (
            select {{ key }}, min(event_date) as first_date from {{ transactions }} group by {{ key }}
            {%- if rebuild_from %}
            union all
            select {{ key }}, {{ feature_read_from(rebuild_from) }} as first_date
            from {{ this }}
            where feature_date = {{ add_days(date_literal(rebuild_from), -1) }}
            {%- endif %}
        ) as candidates
        group by {{ key }}
    ) as first_days
    inner join ({{ feature_dates(rebuild_from) }}) as dates
        on dates.feature_date >= first_days.first_date
{%- endmacro %}
