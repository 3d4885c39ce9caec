-- One row per training job the bill charges (its line items name the job's ARN): what it used and what it
-- cost, by the bill's own figures. Credits and refunds a line item ties to the job count against it.
with billing_line_items as (
    select * from billing_line_items
),

job_lines as (
    select
        *,
        line_item_type in ('Credit', 'Refund') as is_credit,
        line_item_type in ('Usage', 'SavingsPlanCoveredUsage', 'DiscountedUsage') as is_usage
    from billing_line_items
    where training_job_arn is not null
),

final as (
    select
        training_job_arn,
        min(account_id) as account_id,
        min(region) as region,
        coalesce(sum(usage_amount) filter (
            where is_usage and usage_kind in ('compute', 'spot', 'warm_pool')
        ), 0) as billed_usage_hours,
        sum(unblended_cost_usd) as unblended_cost_usd,
        sum(net_unblended_cost_usd) as net_unblended_cost_usd,
        sum(effective_cost_usd) as effective_cost_usd,
        coalesce(sum(public_on_demand_cost_usd) filter (where is_usage), 0) as public_on_demand_cost_usd,
        coalesce(sum(effective_cost_usd) filter (
            where not is_credit and usage_kind in ('compute', 'spot')
        ), 0) as compute_cost_usd,
        coalesce(sum(effective_cost_usd) filter (
            where not is_credit and usage_kind = 'warm_pool'
        ), 0) as warm_pool_cost_usd,
        coalesce(sum(effective_cost_usd) filter (where not is_credit and usage_kind = 'storage'), 0)
            as storage_cost_usd,
        coalesce(sum(effective_cost_usd) filter (where is_credit), 0) as credits_usd,
        coalesce(sum(effective_cost_usd) filter (where not is_credit and usage_kind = 'other'), 0)
            as other_cost_usd,
        min(usage_start) as first_usage_start,
        max(usage_end) as last_usage_end,
        count(*) as line_items
    from job_lines
    group by training_job_arn
)

select * from final
