{#
    Incremental builds by day: a build redoes only what the loads since the previous build can have changed.

    What changed is decided by comparing partitions, not clocks. Every incremental model records, after it
    built, the raw partitions it was built from: per raw table and partition date, the partition's newest
    load (`_loaded_at`) and row count (`record_built_partitions`, a post-hook, into `dbt_built_partitions`
    in the target schema). The next build lists the same figures from the raw tables: a partition that was
    loaded, replaced (a late or corrected file) or removed since differs from the record. Nothing depends on
    _loaded_at being in order or on the clocks of the loaders. A partition loaded while a build runs is left
    out of its record (its load is newer than the build's start), so the next build takes it again.

    No record (the first build, --full-refresh, a record lost) means "everything changed": the model is
    built from scratch, which is also what a changed snapshot (customers, merchants) asks for, since the
    current snapshot's attributes are part of every row.
#}

{# The longest trailing window of the feature marts, in days: a feature date reads this many event days. #}
{% macro longest_window_days() -%}
    30
{%- endmacro %}


{# A 'YYYY-MM-DD' string as a SQL DATE. #}
{% macro date_literal(day) -%}
    cast('{{ day }}' as date)
{%- endmacro %}


{# Where the build records what each incremental model was built from. #}
{% macro built_partitions_relation() -%}
    {{ return(api.Relation.create(database=this.database, schema=target.schema, identifier='dbt_built_partitions')) }}
{%- endmacro %}


{#
    raw_partitions(tables): one row per partition of each raw table in `tables` (snapshots: one per snapshot
    date) with its newest load and its row count: the fingerprint of what a build reads.
#}
{% macro raw_partitions(tables) -%}
    {%- for table in tables %}
    select
        cast('{{ table }}' as {{ dbt.type_string() }}) as source_table,
        cast(_partition_date as date) as partition_date,
        cast(max(_loaded_at) as {{ dbt.type_timestamp() }}) as loaded_at,
        cast(count(*) as {{ dbt.type_bigint() }}) as row_count
    from {{ source('raw', table) }}
    group by cast(_partition_date as date)
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
{%- endmacro %}


{#
    changed_partitions(partitioned, snapshots): what changed in the raw tables since this model's last
    build, as {'dates': [...]} with the changed partition dates of the `partitioned` tables ('YYYY-MM-DD',
    oldest first, maybe none) and 'newest', the newest partition date of the first partitioned table; or
    none when the model must be built from scratch (not incremental, no record, a snapshot changed).
    Only meaningful while executing (a model calls it at the top, before its SQL).
#}
{% macro changed_partitions(partitioned, snapshots=[]) -%}
    {%- if not execute or not is_incremental() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set record = built_partitions_relation() -%}
    {%- if load_relation(record) is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set query -%}
        with current_partitions as (
            {{ raw_partitions(partitioned + snapshots) }}
        ),

        built as (
            select source_table, partition_date, loaded_at, row_count
            from {{ record }}
            where model_name = '{{ this.identifier }}'
        ),

        changed as (
            (select * from current_partitions except select * from built)
            union
            (select * from built except select * from current_partitions)
        )

        select
            cast(changed.partition_date as {{ dbt.type_string() }}) as partition_date,
            case when changed.source_table in ('{{ snapshots | join("', '") }}') then 1 else 0 end as is_snapshot,
            (select count(*) from built) as built_partitions,
            (
                select cast(max(partition_date) as {{ dbt.type_string() }}) from current_partitions
                where source_table = '{{ partitioned[0] }}'
            ) as newest
        from (select 1 as one) as anchor
        left join changed on 1 = 1
        order by changed.partition_date
    {%- endset -%}
    {%- set rows = run_query(query).rows -%}
    {%- if rows[0]['built_partitions'] == 0 or rows | selectattr('is_snapshot', 'equalto', 1) | list -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set dates = rows | map(attribute='partition_date') | reject('none') | unique | list -%}
    {{ return({'dates': dates, 'newest': rows[0]['newest']}) }}
{%- endmacro %}


{#
    feature_rebuild_start(partitioned, snapshots): the first feature date a feature mart must rebuild, as
    'YYYY-MM-DD', or none to build it from scratch. A changed partition of day P (transactions of day P,
    labels reported on P) changes feature dates from P on: the windows of P .. P + 29 contain it, and the
    dense entity spines run to the newest day, so an entity whose first transaction is on P gains rows up
    to it. With nothing changed, the day after the newest: nothing is rebuilt.
#}
{% macro feature_rebuild_start(partitioned, snapshots) -%}
    {%- set changes = changed_partitions(partitioned, snapshots) -%}
    {%- if changes is none -%}
        {{ return(none) }}
    {%- elif changes['dates'] -%}
        {{ return(changes['dates'][0]) }}
    {%- else -%}
        {{ return((modules.datetime.date.fromisoformat(changes['newest']) + modules.datetime.timedelta(days=1)).isoformat()) }}
    {%- endif -%}
{%- endmacro %}


{#
    Pre-hook of every incremental model: a build from scratch forgets the model's record first, so that its
    post-hooks (the record, the export for Feast) see a whole build even if an older record was left over.
#}
{% macro forget_built_partitions() -%}
    {%- set record = built_partitions_relation() -%}
    create table if not exists {{ record }} (
        model_name {{ dbt.type_string() }},
        source_table {{ dbt.type_string() }},
        partition_date date,
        loaded_at {{ dbt.type_timestamp() }},
        row_count {{ dbt.type_bigint() }}
    );
    {%- if not is_incremental() %}
    delete from {{ record }} where model_name = '{{ this.identifier }}';
    {%- endif %}
{%- endmacro %}


{#
    Post-hook of every incremental model: record the raw partitions it was built from. Partitions loaded
    since the build started are left out: the build may not have read them, the next one takes them.
#}
{% macro record_built_partitions(tables) -%}
    {%- set record = built_partitions_relation() -%}
    delete from {{ record }} where model_name = '{{ this.identifier }}';
    insert into {{ record }} (model_name, source_table, partition_date, loaded_at, row_count)
    select '{{ this.identifier }}', source_table, partition_date, loaded_at, row_count
    from ({{ raw_partitions(tables) }}) as partitions
    where loaded_at < cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as {{ dbt.type_timestamp() }});
{%- endmacro %}
