{#
    Generic test: a boolean SQL expression holds for every row. Fails with the rows where it is false
    (rows where it evaluates to NULL pass, like a CHECK constraint; test NULLs with not_null).
    On a column, the expression is appended to the column name (`expression: ">= 0"`); on a model it
    is used as written (`expression: "txn_count_30d >= txn_count_7d"`).
#}
{% test expression_is_true(model, expression, column_name=None) %}
    select *
    from {{ model }}
    where not (
        {%- if column_name is not none %} {{ column_name }} {% endif %} {{ expression }}
    )
{% endtest %}
