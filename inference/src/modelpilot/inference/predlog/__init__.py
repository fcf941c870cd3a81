"""The prediction log: every served row in PostgreSQL, labels joined to it, accuracy and shadow agreement counted.

`records` turns a request's features and prediction into table rows (pure), `writer` writes them off the
request path, `labels` takes the delayed labels, `maintenance` runs the shadow comparisons and retention,
`migrate` owns the schema. docs/prediction-log.md says what is stored and how it behaves.
"""
