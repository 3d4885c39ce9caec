-- The bill's SageMaker training line items in FOCUS 1.2 columns (FinOps Open Cost and Usage Specification),
-- one row per line item, so that FinOps tools that read FOCUS take the per-job figures as they are.
-- Columns FOCUS does not define start with x_.
with billing_line_items as (
    select * from billing_line_items
),

final as (
    select
        unblended_cost_usd as BilledCost,
        effective_cost_usd as EffectiveCost,
        case
            when line_item_type in ('Usage', 'SavingsPlanCoveredUsage', 'DiscountedUsage')
                then coalesce(public_on_demand_cost_usd, unblended_cost_usd)
            else 0
        end as ListCost,
        coalesce(net_unblended_cost_usd, unblended_cost_usd) as ContractedCost,
        'USD' as BillingCurrency,
        cast(billing_period as timestamp) at time zone 'UTC' as BillingPeriodStart,
        (billing_period + interval 1 month) at time zone 'UTC' as BillingPeriodEnd,
        usage_start as ChargePeriodStart,
        usage_end as ChargePeriodEnd,
        case
            when line_item_type = 'Credit' then 'Credit'
            when line_item_type = 'Refund' then 'Adjustment'
            when line_item_type = 'Tax' then 'Tax'
            when line_item_type like '%Fee' then 'Purchase'
            else 'Usage'
        end as ChargeCategory,
        case when line_item_type = 'Refund' then 'Correction' end as ChargeClass,
        usage_type as ChargeDescription,
        usage_amount as ConsumedQuantity,
        pricing_unit as ConsumedUnit,
        usage_amount as PricingQuantity,
        pricing_unit as PricingUnit,
        public_on_demand_rate_usd as ListUnitPrice,
        'AWS' as ProviderName,
        'Amazon Web Services, Inc.' as PublisherName,
        'Amazon Web Services, Inc.' as InvoiceIssuerName,
        region as RegionId,
        resource_id as ResourceId,
        nullif(regexp_extract(training_job_arn, 'training-job/(.+)$', 1), '') as ResourceName,
        case when training_job_arn is not null then 'Training Job' end as ResourceType,
        'AI and Machine Learning' as ServiceCategory,
        'Amazon SageMaker' as ServiceName,
        usage_type as SkuId,
        account_id as SubAccountId,
        resource_tags as Tags,
        training_job_arn as x_TrainingJobArn,
        line_item_type as x_LineItemType,
        line_item_id as x_LineItemId,
        source_row as x_SourceRow,
        export_name as x_ExportName
    from billing_line_items
)

select * from final
