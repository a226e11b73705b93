// Optional virtual network for runners: one subnet delegated to Azure Container
// Instances (container groups join it through `subnet_id` in runners.toml) and
// one plain subnet for Batch pool nodes. Both get a small NSG that allows
// outbound traffic (GitHub, registries, Azure) and no inbound traffic from the
// internet, and both go out through a NAT gateway created here (runner-egress.bicep),
// your own NAT gateway, or a route table to your firewall; Batch's node-management
// traffic is outbound-initiated under the simplified node communication mode (the
// default since 2024).

param location string
param tags object
param vnetName string

@description('Address space of the virtual network.')
param addressPrefix string = '10.40.0.0/16'

@description('Subnet delegated to Microsoft.ContainerInstance/containerGroups.')
param aciSubnetPrefix string = '10.40.0.0/22'

@description('Subnet for Batch pool nodes.')
param batchSubnetPrefix string = '10.40.4.0/22'

@description('Existing NAT gateway for the subnets\' outbound traffic; empty: one is created with its public IP, unless routeTableId is set (runner-egress.bicep).')
param natGatewayId string = ''

@description('Existing route table whose default route leads to your firewall, instead of a NAT gateway; empty: none.')
param routeTableId string = ''

module egress 'runner-egress.bicep' = {
  name: take('${deployment().name}-egress', 64)
  params: {
    location: location
    tags: tags
    namePrefix: vnetName
    natGatewayId: natGatewayId
    routeTableId: routeTableId
  }
}

resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: '${vnetName}-runners-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: [
      {
        name: 'deny-internet-inbound'
        properties: {
          priority: 4000
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: 'Internet'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'aci-runners'
        // The NAT gateway (or route table) of runner-egress.bicep: the runners' way out.
        properties: union({
          addressPrefix: aciSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          delegations: [
            {
              name: 'aci'
              properties: {
                serviceName: 'Microsoft.ContainerInstance/containerGroups'
              }
            }
          ]
        }, egress.outputs.subnetProperties)
      }
      {
        name: 'batch-nodes'
        properties: union({
          addressPrefix: batchSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
        }, egress.outputs.subnetProperties)
      }
    ]
  }
}

output vnetId string = vnet.id
output aciSubnetId string = '${vnet.id}/subnets/aci-runners'
output batchSubnetId string = '${vnet.id}/subnets/batch-nodes'
