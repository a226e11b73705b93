// Role assignments in the main resource group for the Function App's identity
// (least privilege), plus an optional Key Vault Secrets Officer grant for the
// person or pipeline that deploys, so they can set the secrets.
// Principal ids arrive as module parameters so that assignment names (guid())
// can be computed when this nested deployment starts.

import { builtInRoles } from 'roles.bicep'

@description('Principal (object) id of the Function App user-assigned identity.')
param appPrincipalId string

param storageAccountName string
param appInsightsName string
param keyVaultName string
param batchAccountName string
param pullIdentityName string

@description('Runner identity name; empty when none was created.')
param runnerIdentityName string = ''

@description('Virtual network name; empty when no VNet was deployed.')
param vnetName string = ''

@description('Subnet delegated to ACI inside vnetName.')
param aciSubnetName string = 'aci-runners'

@description('Object id that gets Key Vault Secrets Officer (to set secrets); empty to skip.')
param deployerPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param deployerPrincipalType string = 'User'

func roleId(roleGuid string) string => subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleGuid)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource batch 'Microsoft.Batch/batchAccounts@2025-06-01' existing = {
  name: batchAccountName
}

resource pullIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: pullIdentityName
}

resource runnerIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = if (!empty(runnerIdentityName)) {
  name: empty(runnerIdentityName) ? 'unused' : runnerIdentityName
}

// Functions host storage (AzureWebJobsStorage over identity, Flex deployment container,
// queue triggers and outputs, timer/lease tables).
var storageRoles = [
  builtInRoles.storageBlobDataOwner
  builtInRoles.storageQueueDataContributor
  builtInRoles.storageTableDataContributor
]

resource storageAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: {
  name: guid(storage.id, appPrincipalId, role)
  scope: storage
  properties: {
    roleDefinitionId: roleId(role)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

// Application Insights with local auth off: the host authenticates as the app identity.
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, builtInRoles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: roleId(builtInRoles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault references in app settings.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, builtInRoles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: roleId(builtInRoles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(vault.id, deployerPrincipalId, builtInRoles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: roleId(builtInRoles.keyVaultSecretsOfficer)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

// Batch data plane: jobs (one long-lived job per pool) and tasks, read pools.
// "Azure Batch Job Submitter" = pools/read + jobs/* + jobSchedules/* data actions.
resource jobSubmitter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(batch.id, appPrincipalId, builtInRoles.azureBatchJobSubmitter)
  scope: batch
  properties: {
    roleDefinitionId: roleId(builtInRoles.azureBatchJobSubmitter)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Attach the pull identity (and the runner identity) to container groups it creates.
resource pullIdentityOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(pullIdentity.id, appPrincipalId, builtInRoles.managedIdentityOperator)
  scope: pullIdentity
  properties: {
    roleDefinitionId: roleId(builtInRoles.managedIdentityOperator)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource runnerIdentityOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(runnerIdentityName)) {
  name: guid(runnerIdentity.id, appPrincipalId, builtInRoles.managedIdentityOperator)
  scope: runnerIdentity
  properties: {
    roleDefinitionId: roleId(builtInRoles.managedIdentityOperator)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Join container groups to the runner subnet: a two-action custom role on that subnet only.
resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' existing = if (!empty(vnetName)) {
  name: empty(vnetName) ? 'unused' : vnetName
}

resource aciSubnet 'Microsoft.Network/virtualNetworks/subnets@2024-05-01' existing = if (!empty(vnetName)) {
  parent: vnet
  name: aciSubnetName
}

resource subnetJoinRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (!empty(vnetName)) {
  name: guid(resourceGroup().id, 'runner-dispatch-subnet-join')
  properties: {
    roleName: 'runner-dispatch subnet join (${uniqueString(resourceGroup().id)})'
    description: 'Join container groups to a subnet (runner-dispatch).'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Network/virtualNetworks/subnets/read'
          'Microsoft.Network/virtualNetworks/subnets/join/action'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource subnetJoin 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(vnetName)) {
  name: guid(resourceGroup().id, vnetName, aciSubnetName, appPrincipalId, 'subnet-join')
  scope: aciSubnet
  properties: {
    // Custom roles are referenced by their subscription-level id.
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', subnetJoinRole.name)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}
