// The VM lane's image: an Azure Compute Gallery, an image definition, and an Azure Image
// Builder template that builds Ubuntu 24.04 with Docker, the GitHub Actions runner
// (runner-image/fetch-runner.sh, sha256-checked) and the runner entrypoint
// (runner-image/entrypoint.sh) into it. Deploying the template builds nothing: start a
// build with `az image builder run` (docs/deploy.md, "The VM lane"), weekly, so every image
// is well inside GitHub's 30-day runner window.

@description('Azure region of the gallery, the template and the build.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Compute Gallery name (letters, digits, dots and underscores).')
param galleryName string

@description('Image definition name; pools use its id (latest version) as `image`.')
param imageName string = 'docker-runner'

@description('Image Builder template name.')
param templateName string

@description('Name of the identity Image Builder runs as (it writes image versions to the gallery).')
param builderIdentityName string

@description('Runner release to install: "latest" or e.g. "2.330.0".')
param runnerVersion string = 'latest'

@description('VM size of the build VM.')
param buildVmSize string = 'Standard_D2ads_v5'

resource gallery 'Microsoft.Compute/galleries@2023-07-03' = {
  name: galleryName
  location: location
  tags: tags
  properties: {
    description: 'runner-dispatch VM lane images'
  }
}

resource image 'Microsoft.Compute/galleries/images@2023-07-03' = {
  parent: gallery
  name: imageName
  location: location
  tags: tags
  properties: {
    osType: 'Linux'
    osState: 'Generalized'
    hyperVGeneration: 'V2'
    architecture: 'x64'
    identifier: {
      publisher: 'runner-dispatch'
      offer: 'docker-runner'
      sku: 'ubuntu-24_04'
    }
  }
}

resource builderIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: builderIdentityName
  location: location
  tags: tags
}

// What Image Builder needs in this resource group to publish a gallery image version.
resource builderRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'runner-dispatch-image-builder')
  properties: {
    roleName: 'runner-dispatch image builder (${uniqueString(resourceGroup().id)})'
    description: 'Publish VM lane image versions to the gallery (Azure Image Builder, runner-dispatch).'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Compute/galleries/read'
          'Microsoft.Compute/galleries/images/read'
          'Microsoft.Compute/galleries/images/versions/read'
          'Microsoft.Compute/galleries/images/versions/write'
          'Microsoft.Compute/images/read'
          'Microsoft.Compute/images/write'
          'Microsoft.Compute/images/delete'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource builderAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, builderIdentity.id, builderRole.name)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builderRole.name)
    principalId: builderIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

var fetchRunner = loadFileAsBase64('../../runner-image/fetch-runner.sh')
var entrypoint = loadFileAsBase64('../../runner-image/entrypoint.sh')

resource template 'Microsoft.VirtualMachineImages/imageTemplates@2024-02-01' = {
  name: templateName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${builderIdentity.id}': {}
    }
  }
  properties: {
    buildTimeoutInMinutes: 60
    vmProfile: {
      vmSize: buildVmSize
      osDiskSizeGB: 64
    }
    source: {
      type: 'PlatformImage'
      publisher: 'Canonical'
      offer: 'ubuntu-24_04-lts'
      sku: 'server'
      version: 'latest'
    }
    customize: [
      {
        type: 'Shell'
        name: 'docker-and-tools'
        inline: [
          'set -euxo pipefail'
          'export DEBIAN_FRONTEND=noninteractive'
          'sudo apt-get update'
          'sudo apt-get install -y --no-install-recommends docker.io docker-buildx docker-compose-v2 ca-certificates curl git git-lfs jq unzip zip xz-utils build-essential'
          'sudo systemctl enable docker'
        ]
      }
      {
        type: 'Shell'
        name: 'runner'
        inline: [
          'set -euxo pipefail'
          'id runner || sudo useradd --create-home --shell /bin/bash runner'
          'sudo usermod -aG docker runner'
          'echo ${fetchRunner} | base64 -d | sudo tee /usr/local/bin/fetch-runner.sh >/dev/null'
          'echo ${entrypoint} | base64 -d | sudo tee /usr/local/bin/runner-entrypoint.sh >/dev/null'
          'sudo chmod 0755 /usr/local/bin/fetch-runner.sh /usr/local/bin/runner-entrypoint.sh'
          'sudo install -d -o runner -g runner /home/runner/actions-runner'
          'cd /home/runner/actions-runner && sudo -u runner env RUNNER_VERSION=${runnerVersion} /usr/local/bin/fetch-runner.sh'
          'cd /home/runner/actions-runner && sudo ./bin/installdependencies.sh'
          'sudo -u runner mkdir -p /home/runner/actions-runner/_work'
        ]
      }
    ]
    distribute: [
      {
        type: 'SharedImage'
        galleryImageId: image.id
        runOutputName: 'docker-runner'
        replicationRegions: [
          location
        ]
        excludeFromLatest: false
      }
    ]
  }
  dependsOn: [
    builderAssignment
  ]
}

@description('Use as `image` of a vm pool: the image definition (its latest version).')
output imageId string = image.id
output galleryName string = gallery.name
output templateName string = template.name
