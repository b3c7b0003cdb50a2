{#
    Small portability helpers for the SQL that has to run unchanged on DuckDB (local) and Postgres (prod).
#}

{# A 64-bit float. `dbt.type_float()` renders FLOAT, which is single precision on DuckDB. #}
{% macro type_double() -%}
    double precision
{%- endmacro %}


{# `date_expr` plus `days` days, as a DATE (date + interval is a TIMESTAMP on both engines). #}
{% macro add_days(date_expr, days) -%}
    cast({{ dbt.dateadd('day', days, date_expr) }} as date)
{%- endmacro %}


{# 00:00 of the day after `date_expr`, as a naive TIMESTAMP: the instant a day's features become valid. #}
{% macro start_of_next_day(date_expr) -%}
    cast({{ add_days(date_expr, 1) }} as {{ dbt.type_timestamp() }})
{%- endmacro %}


{#
    date_series(start_date, end_date): a SELECT returning one row per day from start_date to end_date
    (both inclusive) in a single DATE column `date_day`. The arguments are SQL expressions, e.g. scalar
    subqueries. Both engines have generate_series, with different signatures; the default is a
    recursive CTE for any other adapter.
#}
{% macro date_series(start_date, end_date) -%}
    {{ return(adapter.dispatch('date_series', 'mlplatform')(start_date, end_date)) }}
{%- endmacro %}

{% macro duckdb__date_series(start_date, end_date) -%}
    select cast(unnest(generate_series(
        cast(({{ start_date }}) as timestamp),
        cast(({{ end_date }}) as timestamp),
        interval 1 day
    )) as date) as date_day
{%- endmacro %}

{% macro postgres__date_series(start_date, end_date) -%}
    select cast(series.day_ts as date) as date_day
    from generate_series(
        cast(({{ start_date }}) as timestamp),
        cast(({{ end_date }}) as timestamp),
        interval '1 day'
    ) as series(day_ts)
{%- endmacro %}

{% macro default__date_series(start_date, end_date) -%}
    with recursive days (date_day) as (
        select cast(({{ start_date }}) as date)
        union all
        select {{ add_days('date_day', 1) }} from days where date_day < cast(({{ end_date }}) as date)
    )
    select date_day from days
{%- endmacro %}
