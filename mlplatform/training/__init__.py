"""Models as declared units: specs (models/*.yaml, `spec`), the chain each becomes (`factory`), the estimator
(`model`), its gates, registry decisions and model cards."""
