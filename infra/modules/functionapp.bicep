// The Function App on the Flex Consumption plan (FC1, Linux), running the
// runner-dispatch binary as a custom handler (runtime name `custom`, version
// `1.0`). It runs as a user-assigned identity for everything: host storage,
// the deployment container, Application Insights, Key Vault references, Batch
// and ARM. App settings follow the names of design.md ("Settings").
//
// None of the site properties and app settings of Microsoft's "Flex Consumption plan
// deprecations" table is set (check_bicep.py checks it): the runtime is
// functionAppConfig.runtime (not FUNCTIONS_WORKER_RUNTIME), the platform sets
// FUNCTIONS_EXTENSION_VERSION itself, and the package comes from the deployment container
// (not WEBSITE_RUN_FROM_PACKAGE or WEBSITE_CONTENT*).

param location string
param tags object
param planName string
param appName string

@description('Resource id of the app\'s user-assigned identity.')
param appIdentityId string

@description('Client id of the app\'s user-assigned identity.')
param appIdentityClientId string

param storageAccountName string
param deploymentContainerUrl string
param appInsightsConnectionString string

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app scales out to: 1-1000 on Flex Consumption (the lowest maximum was 40 until 2025).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances for the HTTP function group (github-webhook). 1 keeps the webhook answer well inside GitHub\'s 10 s limit at a small fixed cost; 0 scales to zero.')
@minValue(0)
param httpAlwaysReady int = 0

@description('Subnet for outbound VNet integration (delegated to Microsoft.App/environments); empty for none.')
param virtualNetworkSubnetId string = ''

@description('App settings specific to runner-dispatch (merged over the host settings).')
param appSettings object

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy on Flex Consumption exists only in some regions and needs zone-redundant storage; a missed webhook is redelivered or picked up by the reconciler, so it is left to the user (infra/README.md)
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

var hostSettings = {
  // Host storage over the user-assigned identity (no account key anywhere).
  AzureWebJobsStorage__accountName: storageAccountName
  // Explicit endpoints from the cloud's own storage suffix: with the account name alone the
  // host assumes core.windows.net, which is wrong in sovereign clouds.
  AzureWebJobsStorage__blobServiceUri: 'https://${storageAccountName}.blob.${environment().suffixes.storage}'
  AzureWebJobsStorage__queueServiceUri: 'https://${storageAccountName}.queue.${environment().suffixes.storage}'
  AzureWebJobsStorage__tableServiceUri: 'https://${storageAccountName}.table.${environment().suffixes.storage}'
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: appIdentityClientId
  // Telemetry with Entra ID auth (the component has local auth off).
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${appIdentityClientId};Authorization=AAD'
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: GitHub delivers webhooks from the internet; requests are authenticated by the HMAC signature (GITHUB_WEBHOOK_SECRET)
  // checkov:skip=CKV_AZURE_17: GitHub webhook deliveries carry no client certificate; the HMAC signature authenticates them
  // checkov:skip=CKV_AZURE_212: Flex Consumption has no worker count; the platform scales instances and httpAlwaysReady keeps warm ones
  // checkov:skip=CKV_AZURE_213: Flex Consumption does not support the App Service health check feature
  // checkov:skip=CKV_AZURE_78: ftpsState is on Microsoft's list of Flex Consumption deprecations; Flex has no FTP deployment
  name: appName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Only what Flex Consumption accepts: ftpsState is among Microsoft's "Flex Consumption
    // plan deprecations"; check_bicep.py fails on any property or setting of that list.
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
    }
    // Resolve @Microsoft.KeyVault(...) app settings with the user-assigned identity.
    keyVaultReferenceIdentity: appIdentityId
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: appIdentityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: httpAlwaysReady > 0 ? [
          {
            name: 'http'
            instanceCount: httpAlwaysReady
          }
        ] : []
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
}

// App settings as a separate child resource so they can be merged in one object.
// checkov reads every Microsoft.Web/sites/config as the `web` (siteConfig) resource;
// this one is `appsettings`, a map of names to values, so the siteConfig checks do not apply.
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_66: appsettings resource, not siteConfig (see above)
  // checkov:skip=CKV_AZURE_63: appsettings resource, not siteConfig (see above)
  // checkov:skip=CKV_AZURE_65: appsettings resource, not siteConfig (see above)
  // checkov:skip=CKV_AZURE_80: appsettings resource, not siteConfig; the app is a custom handler, not .NET
  // checkov:skip=CKV_AZURE_88: appsettings resource; Flex Consumption has no Azure Files content share
  // checkov:skip=CKV_AZURE_222: appsettings resource; the app itself must stay reachable by GitHub (see the app)
  // checkov:skip=CKV_AZURE_13: GitHub cannot sign in to App Service Authentication; webhooks are authenticated by their HMAC signature
  parent: app
  name: 'appsettings'
  properties: union(hostSettings, appSettings)
}

output appName string = app.name
output appId string = app.id
output defaultHostName string = app.properties.defaultHostName
