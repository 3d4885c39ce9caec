-- One row per training job: the scalar facts of its latest record, flattened.
-- Reads `latest_records` (one row per job: account_id, region, fetched_at, fetched_with, run_id, job = the
-- typed record).
with records as (
    select * from latest_records
),

resources as (
    select
        *,
        job.ResourceConfig as resource_config,
        len(coalesce(job.ResourceConfig.InstanceGroups, [])) > 0 as is_heterogeneous_cluster
    from records
)

select
    job.TrainingJobArn as training_job_arn,
    job.TrainingJobName as training_job_name,
    account_id,
    region,
    job.TrainingJobStatus as training_job_status,
    job.SecondaryStatus as secondary_status,
    job.FailureReason as failure_reason,
    job.CreationTime as creation_time,
    job.TrainingStartTime as training_start_time,
    job.TrainingEndTime as training_end_time,
    job.LastModifiedTime as last_modified_time,
    job.TrainingTimeInSeconds as training_time_in_seconds,
    job.BillableTimeInSeconds as billable_time_in_seconds,
    -- What actually ran: the selected pair under flexible instance selection, none for heterogeneous clusters.
    case when not is_heterogeneous_cluster
        then coalesce(resource_config.SelectedInstanceType, resource_config.InstanceType) end as instance_type,
    case when not is_heterogeneous_cluster
        then coalesce(resource_config.SelectedInstanceCount, resource_config.InstanceCount) end as instance_count,
    is_heterogeneous_cluster,
    resource_config.VolumeSizeInGB as volume_size_in_gb,
    coalesce(job.EnableManagedSpotTraining, false) as enable_managed_spot_training,
    job.StoppingCondition.MaxRuntimeInSeconds as max_runtime_in_seconds,
    job.StoppingCondition.MaxWaitTimeInSeconds as max_wait_time_in_seconds,
    job.AlgorithmSpecification.TrainingImage as training_image,
    job.AlgorithmSpecification.AlgorithmName as algorithm_name,
    job.AlgorithmSpecification.TrainingInputMode as training_input_mode,
    job.RoleArn as role_arn,
    job.OutputDataConfig.S3OutputPath as s3_output_path,
    nullif(job.ModelArtifacts.S3ModelArtifacts, '') as s3_model_artifacts,
    job.TuningJobArn as tuning_job_arn,
    job.LabelingJobArn as labeling_job_arn,
    job.AutoMLJobArn as auto_ml_job_arn,
    job.WarmPoolStatus.Status as warm_pool_status,
    job.WarmPoolStatus.ResourceRetainedBillableTimeInSeconds as resource_retained_billable_time_in_seconds,
    job.WarmPoolStatus.ReusedByJob as warm_pool_reused_by_job,
    resource_config.KeepAlivePeriodInSeconds as keep_alive_period_in_seconds,
    -- Under flexible instance selection the plan belongs to the preference that was selected.
    coalesce(
        resource_config.TrainingPlanArn,
        list_filter(
            resource_config.InstancePreferences,
            lambda preference: preference.InstanceType = resource_config.SelectedInstanceType
            and preference.InstanceCount = resource_config.SelectedInstanceCount
        )[1].TrainingPlanArns[1]
    ) as training_plan_arn,
    job.BillableTokenCount as billable_token_count,
    job.ServerlessJobConfig.JobType as serverless_job_type,
    job.EnableNetworkIsolation as enable_network_isolation,
    job.EnableInterContainerTrafficEncryption as enable_inter_container_traffic_encryption,
    job.CheckpointConfig.S3Uri as checkpoint_s3_uri,
    job.ExperimentConfig.ExperimentName as experiment_name,
    job.ExperimentConfig.TrialName as trial_name,
    fetched_at,
    -- Files written before Search mode existed have no marker: they came from Describe.
    coalesce(fetched_with, 'DescribeTrainingJob+ListTags') as fetched_with,
    run_id as fetch_run_id
from resources
