// Outbound path to the internet for the runner subnets (network.bicep, aci-network.bicep).
// Container groups in a subnet get no public IP, and Microsoft's Container Instances pages
// name a NAT gateway on the delegated subnet as the way out; runners must reach GitHub,
// the registry and Azure. Default: a NAT gateway with one static public IP, created here.
// Or bring your own NAT gateway (natGatewayId), or a route table whose default route goes
// to your firewall (routeTableId). Deployed in the virtual network's resource group.

param location string
param tags object

@description('Name prefix of the NAT gateway and its public IP (<namePrefix>-nat, <namePrefix>-nat-ip).')
param namePrefix string

@description('Existing NAT gateway (resource id, same region as the VNet); empty: one is created, unless routeTableId is set.')
param natGatewayId string = ''

@description('Existing route table (resource id, same region) whose 0.0.0.0/0 route leads to your firewall, instead of a NAT gateway; empty: none.')
param routeTableId string = ''

// Both set is ambiguous: refused rather than one of them silently ignored.
var useRouteTable = empty(routeTableId) ? false : (empty(natGatewayId) ? true : fail('natGatewayId and routeTableId: set one of them (a NAT gateway, or a route table to your firewall), not both'))
var createNatGateway = empty(natGatewayId) && !useRouteTable

resource publicIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = if (createNatGateway) {
  name: '${namePrefix}-nat-ip'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

resource natGateway 'Microsoft.Network/natGateways@2024-05-01' = if (createNatGateway) {
  name: '${namePrefix}-nat'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: 4
    publicIpAddresses: [
      {
        id: publicIp.id
      }
    ]
  }
}

@description('What each runner subnet adds to its properties: its NAT gateway, or its route table.')
output subnetProperties object = useRouteTable ? {
  routeTable: {
    id: routeTableId
  }
} : {
  natGateway: {
    id: createNatGateway ? natGateway.id : natGatewayId
  }
}
