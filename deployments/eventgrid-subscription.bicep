// One Event Grid subscription delivering an Azure ML workspace's events to the drift-retrain receiver.
// Deploy into the workspace's resource group, once per subscription; parameters files come from
//   drift-retrain azure subscription --target <name> --format bicep-params --out params/
//   az deployment group create -g <rg> -f deployments/eventgrid-subscription.bicep -p @params/<subscription>.parameters.json \
//      -p webhookSecret="$DRIFT_RETRAIN_WEBHOOK_SECRET"          (auth "secret" only)

@description('Name of the Azure Machine Learning workspace whose events are delivered')
param workspaceName string
param subscriptionName string
@description('The receiver behind TLS, without the secret, e.g. https://drift.example.com/api/eventgrid')
param endpointUrl string
@allowed(['secret', 'entra', 'none'])
param authMode string = 'secret'
@secure()
@description('The shared secret (auth "secret"); never stored in the parameters file')
param webhookSecret string = ''
@description('Also send the secret in this header (receiver.secret_header); empty: only ?code=')
param secretHeader string = ''
param entraTenantId string = ''
param entraAudience string = ''
@allowed(['EventGridSchema', 'CloudEventSchemaV1_0'])
param deliverySchema string = 'EventGridSchema'
param includedEventTypes array = []
param subjectBeginsWith string = ''
param subjectEndsWith string = ''
param subjectCaseSensitive bool = false
@description('Objects like {"operatorType": "StringContains", "key": "data.RunTags.x", "values": ["..."]}')
param advancedFilters array = []
param advancedFilteringOnArrays bool = false
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30
@minValue(1)
@maxValue(1440)
param eventTtlMinutes int = 1440
param maxEventsPerBatch int = 1
param preferredBatchSizeKb int = 64
@description('ARM id of a blob container: /subscriptions/.../storageAccounts/<account>/blobServices/default/containers/<container>; empty: none')
param deadLetterContainerId string = ''

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

var secretUrl = authMode == 'secret' ? '${endpointUrl}?code=${webhookSecret}' : endpointUrl
var headerMappings = (authMode == 'secret' && !empty(secretHeader)) ? [
  {
    name: secretHeader
    type: 'Static'
    properties: { value: webhookSecret, isSecret: true }
  }
] : []
var entra = authMode == 'entra' ? {
  azureActiveDirectoryTenantId: entraTenantId
  azureActiveDirectoryApplicationIdOrUri: entraAudience
} : {}
var deadLetterParts = split(deadLetterContainerId, '/blobServices/default/containers/')

resource subscription 'Microsoft.EventGrid/eventSubscriptions@2022-06-15' = {
  name: subscriptionName
  scope: workspace
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: union({
        endpointUrl: secretUrl
        maxEventsPerBatch: maxEventsPerBatch
        preferredBatchSizeInKilobytes: preferredBatchSizeKb
        deliveryAttributeMappings: headerMappings
      }, entra)
    }
    eventDeliverySchema: deliverySchema
    filter: {
      includedEventTypes: empty(includedEventTypes) ? null : includedEventTypes
      subjectBeginsWith: subjectBeginsWith
      subjectEndsWith: subjectEndsWith
      isSubjectCaseSensitive: subjectCaseSensitive
      advancedFilters: advancedFilters
      enableAdvancedFilteringOnArrays: advancedFilteringOnArrays
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTtlMinutes
    }
    deadLetterDestination: empty(deadLetterContainerId) ? null : {
      endpointType: 'StorageBlob'
      properties: {
        resourceId: deadLetterParts[0]
        blobContainerName: last(deadLetterParts)
      }
    }
  }
}

output subscriptionId string = subscription.id
