{#
    export_for_feast(): post-hook of the feature marts. On DuckDB (local profile) it writes the mart as
    parquet into MLPLATFORM_FEAST_DATA_DIR (default: the project's state/feast/data, for `dbt build`
    run by hand from this folder), the files Feast's offline store reads, with timestamps
    as UTC microseconds (what Feast expects). On other adapters it does nothing: Feast reads the table.
#}
{% macro export_for_feast() -%}
    {{ return(adapter.dispatch('export_for_feast', 'mlplatform')()) }}
{%- endmacro %}

{% macro default__export_for_feast() -%}
    select 1
{%- endmacro %}

{% macro duckdb__export_for_feast() -%}
    {%- set data_dir = env_var('MLPLATFORM_FEAST_DATA_DIR', '../state/feast/data') -%}
    set TimeZone = 'UTC';
    copy (
        select * replace (cast(feature_ts as timestamptz) as feature_ts) from {{ this }}
    ) to '{{ data_dir }}/{{ this.identifier }}.parquet' (format parquet)
{%- endmacro %}
