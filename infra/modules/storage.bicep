// Storage for the Functions host: AzureWebJobsStorage (blobs for leases and
// timers, queues for the bindings) and the Flex Consumption deployment container.
// Shared-key access is off: the host, the queue bindings and the Flex deployment
// all use the app's user-assigned identity.

param location string
param tags object

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Storage queues to create (the host creates *-poison queues on demand; we create them too so identity-only access never needs queue-create rights).')
param queueNames array = [
  'runner-requests'
  'runner-requests-failed'
  'runner-cleanup'
  'runner-cleanup-failed'
  'runner-requests-poison'
  'runner-cleanup-poison'
]

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
])
param skuName string = 'Standard_LRS'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches its host storage over the public endpoint; shared keys are off, so only Entra ID identities with a role get in
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35 (anonymous blob access itself is off: allowBlobPublicAccess false)
  // checkov:skip=CKV_AZURE_206: the account holds leases, queue messages and the deployment package, all recreated or redelivered; skuName selects ZRS/GRS where wanted
  // checkov:skip=CKV_AZURE_43: the name is a parameter that main.bicep builds from lower-case letters and digits (toLower, take 24); checkov cannot evaluate it
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// runner-dispatch's own state under the host: the idle runners' demand log (append
// blobs of arrivals, start times and idle counts in ten-minute buckets; see README
// "Idle runners kept ready"). Read back over the last hour; deleted after two days.
resource stateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'runner-dispatch-state'
  properties: {
    publicAccess: 'None'
  }
}

resource stateLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'runner-dispatch-demand-log'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'appendBlob'
              ]
              prefixMatch: [
                '${stateContainer.name}/demand/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: 2
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
}]

output storageAccountId string = storage.id
output storageAccountName string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output deploymentContainerUrl string = '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
