"""The bill: SageMaker training line items of a Cost and Usage Report 2.0 export, loaded into the raw
layer so that the models can set estimates beside what AWS billed."""
