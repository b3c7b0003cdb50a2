{#
    Generic test: no two rows share the same values in `combination_of_columns` (a compound key such as
    customer_id + feature_date). Fails with one row per duplicated key and the number of copies.
    Usage:
        data_tests:
          - unique_combination_of_columns:
              arguments:
                combination_of_columns: [customer_id, feature_date]
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    {%- set columns_csv = combination_of_columns | join(', ') %}

    select {{ columns_csv }}, count(*) as n_rows
    from {{ model }}
    group by {{ columns_csv }}
    having count(*) > 1
{% endtest %}
