-- One row per training job known to the warehouse or to the bill, plus one row per account, region, usage
-- type and line-item type for billed training cost that no job claims: the estimate beside what AWS billed,
-- and why they differ. The effective costs sum to the bill's SageMaker training total.
-- Agreement means within $0.01 or 1% of the larger figure, whichever is more (docs/costs.md).
with job_costs as (
    select * from job_costs
),

jobs as (
    select * from jobs
),

job_billed_costs as (
    select * from job_billed_costs
),

billing_line_items as (
    select * from billing_line_items
),

coverage as (
    select * from bill_coverage
),

whole_bill as (
    select max(billed_until) as billed_until from coverage
),

estimates as (
    select
        job_costs.training_job_arn,
        job_costs.account_id,
        job_costs.region,
        job_costs.total_cost_usd,
        job_costs.is_final,
        -- Billing for a job ends with its training, or with its warm pool's retention after that; a job
        -- that never started has nothing to bill after it was last modified; only a running job's usage
        -- runs on to its last fetch.
        case
            when jobs.training_start_time is null then coalesce(jobs.last_modified_time, jobs.creation_time)
            else coalesce(
                jobs.training_end_time, case when job_costs.is_final then jobs.last_modified_time end, jobs.fetched_at
            ) + to_seconds(coalesce(jobs.resource_retained_billable_time_in_seconds, 0))
        end as usage_end
    from job_costs
    join jobs using (training_job_arn)
),

both_sides as (
    select
        coalesce(estimates.training_job_arn, job_billed_costs.training_job_arn) as training_job_arn,
        coalesce(estimates.account_id, job_billed_costs.account_id) as account_id,
        coalesce(estimates.region, job_billed_costs.region) as region,
        estimates.training_job_arn is not null as in_warehouse,
        job_billed_costs.training_job_arn is not null as is_billed,
        estimates.total_cost_usd as estimated_total_cost_usd,
        job_billed_costs.effective_cost_usd,
        job_billed_costs.public_on_demand_cost_usd,
        job_billed_costs.unblended_cost_usd,
        estimates.is_final,
        estimates.usage_end,
        coalesce(coverage.billed_until, whole_bill.billed_until) as billed_until
    from estimates
    full outer join job_billed_costs
        on lower(estimates.training_job_arn) = lower(job_billed_costs.training_job_arn)
    cross join whole_bill
    left join coverage on coalesce(estimates.account_id, job_billed_costs.account_id) = coverage.account_id
),

with_tolerance as (
    select
        *,
        greatest(
            0.01,
            0.01 * greatest(abs(coalesce(estimated_total_cost_usd, 0)), abs(coalesce(effective_cost_usd, 0)))
        ) as tolerance
    from both_sides
),

job_rows as (
    select
        training_job_arn,
        account_id,
        region,
        null::varchar as usage_type,
        null::varchar as line_item_type,
        case
            when billed_until is null then 'no_bill'
            when not in_warehouse then 'not_in_warehouse'
            when not is_final or usage_end > billed_until then 'not_yet_billed'
            when estimated_total_cost_usd is null then 'unpriced_estimate'
            when abs(coalesce(effective_cost_usd, 0) - estimated_total_cost_usd) <= tolerance then 'matched'
            when not is_billed then 'not_in_bill'
            when abs(public_on_demand_cost_usd - estimated_total_cost_usd) <= tolerance
                and effective_cost_usd < public_on_demand_cost_usd then 'discounted'
            else 'price_differs'
        end as status,
        estimated_total_cost_usd,
        case when billed_until is not null then coalesce(effective_cost_usd, 0) end as effective_cost_usd,
        case when billed_until is not null then coalesce(public_on_demand_cost_usd, 0) end
            as public_on_demand_cost_usd,
        case when billed_until is not null then coalesce(unblended_cost_usd, 0) end as unblended_cost_usd,
        billed_until
    from with_tolerance
),

unclaimed as (
    -- Billed training cost no job claims (no resource ID, or one that is not a training job): kept as rows.
    select
        null::varchar as training_job_arn,
        billing_line_items.account_id,
        billing_line_items.region,
        billing_line_items.usage_type,
        billing_line_items.line_item_type,
        'unattributed' as status,
        null::double as estimated_total_cost_usd,
        sum(billing_line_items.effective_cost_usd) as effective_cost_usd,
        coalesce(sum(billing_line_items.public_on_demand_cost_usd) filter (
            where billing_line_items.line_item_type in ('Usage', 'SavingsPlanCoveredUsage', 'DiscountedUsage')
        ), 0) as public_on_demand_cost_usd,
        sum(billing_line_items.unblended_cost_usd) as unblended_cost_usd,
        any_value(coverage.billed_until) as billed_until
    from billing_line_items
    left join coverage using (account_id)
    where billing_line_items.training_job_arn is null
    group by all
),

both_kinds as (
    select * from job_rows
    union all by name
    select * from unclaimed
),

final as (
    select
        *,
        effective_cost_usd - estimated_total_cost_usd as difference_usd
    from both_kinds
)

select
    training_job_arn,
    account_id,
    region,
    usage_type,
    line_item_type,
    status,
    estimated_total_cost_usd,
    effective_cost_usd,
    public_on_demand_cost_usd,
    unblended_cost_usd,
    difference_usd,
    billed_until
from final
