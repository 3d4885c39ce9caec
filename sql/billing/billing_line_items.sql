-- One row per SageMaker training line item of the bill. Reads cur_line_items: the raw layer's CUR 2.0 rows
-- (raw/billing), with every column the models read present even when an export lacks it.
with cur_line_items as (
    select * from cur_line_items
),

final as (
    select
        smw_export_name as export_name,
        -- The period as a UTC date, whatever the session time zone.
        cast(bill_billing_period_start_date at time zone 'UTC' as date) as billing_period,
        smw_source_row as source_row,
        identity_line_item_id as line_item_id,
        line_item_usage_account_id as account_id,
        line_item_line_item_type as line_item_type,
        line_item_usage_type as usage_type,
        case
            when line_item_usage_type ilike '%:VolumeUsage%' then 'storage'
            when line_item_usage_type ilike '%spot%' then 'spot'
            when line_item_usage_type ilike '%warm%' then 'warm_pool'
            when regexp_matches(line_item_usage_type, ':ml\.') then 'compute'
            else 'other'
        end as usage_kind,
        line_item_operation as operation,
        nullif(line_item_resource_id, '') as resource_id,
        case
            when regexp_matches(line_item_resource_id, '^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:training-job/')
                then line_item_resource_id
        end as training_job_arn,
        coalesce(
            nullif(product_instance_type, ''),
            nullif(regexp_extract(line_item_usage_type, ':(ml\.[a-z0-9-]+\.[a-z0-9]+)$', 1), '')
        ) as instance_type,
        nullif(product_region_code, '') as region,
        line_item_usage_start_date as usage_start,
        line_item_usage_end_date as usage_end,
        line_item_usage_amount as usage_amount,
        nullif(pricing_unit, '') as pricing_unit,
        try_cast(nullif(line_item_unblended_rate, '') as double) as unblended_rate_usd,
        line_item_unblended_cost as unblended_cost_usd,
        line_item_net_unblended_cost as net_unblended_cost_usd,
        savings_plan_savings_plan_effective_cost as savings_plan_effective_cost_usd,
        nullif(savings_plan_savings_plan_a_r_n, '') as savings_plan_arn,
        try_cast(nullif(pricing_public_on_demand_rate, '') as double) as public_on_demand_rate_usd,
        pricing_public_on_demand_cost as public_on_demand_cost_usd,
        -- The amortized cost AWS's own CUR queries use: covered usage costs its share of the plan, the
        -- negation that cancels its on-demand charge costs nothing, everything else costs what it billed.
        case line_item_line_item_type
            when 'SavingsPlanCoveredUsage' then coalesce(savings_plan_savings_plan_effective_cost, 0)
            when 'SavingsPlanNegation' then 0
            when 'SavingsPlanUpfrontFee' then 0
            else line_item_unblended_cost
        end as effective_cost_usd,
        case when cardinality(resource_tags) > 0 then cast(to_json(resource_tags) as varchar) end as resource_tags
    from cur_line_items
)

select * from final
