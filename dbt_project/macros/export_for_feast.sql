{#
    export_for_feast(rebuild_from): post-hook of the feature marts. On DuckDB (local profile) it writes the
    mart as parquet into MLPLATFORM_FEAST_DATA_DIR (default: the project's state/feast/data, for `dbt build`
    run by hand from this folder), the files Feast's offline store reads, with timestamps as UTC
    microseconds (what Feast expects). On other adapters it does nothing: Feast reads the table.

    The files are one per month of feature dates, `<mart>/feature_month=YYYY-MM/data_0.parquet` (the DuckDB
    offline store reads the folder): an incremental build rewrites only the months from `rebuild_from` on
    (a day's build: the current month, whatever the history's length); a build from scratch
    (`rebuild_from` none) replaces the folder. A month, not a day, per file: reading a year of features
    then opens 12 files, not 365.
#}
{% macro export_for_feast(rebuild_from) -%}
    {{ return(adapter.dispatch('export_for_feast', 'mlplatform')(rebuild_from)) }}
{%- endmacro %}

{% macro default__export_for_feast(rebuild_from) -%}
    select 1
{%- endmacro %}

{% macro duckdb__export_for_feast(rebuild_from) -%}
    {%- set data_dir = env_var('MLPLATFORM_FEAST_DATA_DIR', '../state/feast/data') -%}
    set TimeZone = 'UTC';
    copy (
        select
            * replace (cast(feature_ts as timestamptz) as feature_ts),
            strftime(feature_date, '%Y-%m') as feature_month
        from {{ this }}
        {%- if rebuild_from %}
        where feature_date >= date_trunc('month', {{ date_literal(rebuild_from) }})
        {%- endif %}
    ) to '{{ data_dir }}/{{ this.identifier }}' (
        format parquet,
        partition_by (feature_month),
        {{ 'overwrite_or_ignore' if rebuild_from else 'overwrite' }}
    )
{%- endmacro %}
