{#
  The index through which the prod offline store looks up each event's newest feature row
  (mlplatform/postgres_offline_store.py, ViewJoin.lookup): the view's join keys, then the row time as the
  Feast source states it (feature_repo/features.py, postgres_source: feature_ts at time zone 'UTC'). With
  it, a retrieval costs one index descent per event, whatever the history's length; a table without it
  is read by a hash join instead. Postgres only: DuckDB's ASOF join needs no index, and one would slow
  each day's insert.
#}
{% macro feast_lookup_indexes(join_keys) %}
  {%- if target.type == 'postgres' -%}
    {{ return([{'columns': join_keys + ["(feature_ts at time zone 'UTC')"]}]) }}
  {%- endif -%}
  {{ return([]) }}
{% endmacro %}
