export { createPipeline } from './pipeline.js';
export type { MqttUplink, Pipeline, PipelineDeps, PipelineStats, PipelineStore, RejectSource } from './types.js';
